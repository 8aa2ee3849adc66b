"""Export / import of the round-2 providers' entries: binary AWS event-stream frames (Bedrock),
NDJSON streams (Ollama), a model in the path (Gemini) — each survives the trip byte for byte
and answers its own SDK's requests from an offline proxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import ollama
import orjson
from botocore.config import Config as BotoConfig
from google import genai
from google.genai import types

from tests.ops.conftest import Backend, Cli
from tests.proxy.more_providers.conftest import (  # noqa: F401 - fixtures used by name
    Fakes,
    ProxyFactory,
    _aws_environment,
    _fake_servers,
    fakes,
    start_proxy,
)

NOVA = "amazon.nova-lite-v1:0"
CHAT = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]


def bedrock(url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDFAKECLIENT000001",
        aws_secret_access_key="client-secret-key",
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )


def gemini(url: str) -> genai.Client:
    options = types.HttpOptions(base_url=url, retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key="AIza-gemini-secret-0001", http_options=options)


def calls(url: str) -> dict[str, Any]:
    """One streamed call per provider (and a plain Bedrock one); what each answered."""
    b = bedrock(url)
    out: dict[str, Any] = {
        "bedrock_stream": list(b.converse_stream(modelId=NOVA, messages=CHAT)["stream"]),
        "bedrock": b.converse(modelId=NOVA, messages=CHAT)["output"],
        "ollama_stream": [
            c.model_dump()
            for c in ollama.Client(host=url).chat(
                model="llama3.2", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        ],
    }
    client = gemini(url)  # kept alive while the stream is read
    chunks = client.models.generate_content_stream(
        model="gemini-2.5-flash", contents="Why is the sky blue?"
    )
    out["gemini_stream"] = [(c.response_id, c.text) for c in chunks]
    return out


def test_binary_ndjson_and_path_model_entries_survive_export_and_import(
    start_proxy: ProxyFactory,  # noqa: F811
    fakes: Fakes,  # noqa: F811
    run_cli: Cli,
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "a.db", tmp_path / "b.db"
    with start_proxy(sqlite_path=source) as proxy:
        originals = calls(proxy.url)
    upstream_calls = (
        fakes.bedrock.request_count,
        fakes.ollama.request_count,
        fakes.gemini.request_count,
    )

    src = Backend("sqlite", {"LLM_CACHE_SQLITE_PATH": str(source)}, {})
    dst = Backend("sqlite", {"LLM_CACHE_SQLITE_PATH": str(target)}, {})
    exported = run_cli(src, "export", str(tmp_path / "x.jsonl.gz"))
    assert (
        exported.exit_code == 0 and "exported 3 entries" in exported.stderr
    )  # converse shares the stream's entry
    imported = run_cli(dst, "import", str(tmp_path / "x.jsonl.gz"))
    assert imported.exit_code == 0, imported.stderr
    assert "imported 3 entries" in imported.stderr and "re-keyed" not in imported.stderr

    dumped = run_cli(dst, "export", "-").stdout_bytes
    records = {r["metadata"]["provider"]: r for r in map(orjson.loads, dumped.splitlines())}
    assert set(records) >= {"bedrock", "ollama", "gemini"}
    stream = next(
        r
        for r in map(orjson.loads, dumped.splitlines())
        if "events" in r["response"] and r["metadata"]["provider"] == "bedrock"
    )
    assert all("data_b64" in e for e in stream["response"]["events"])  # binary frames

    with start_proxy(sqlite_path=target, mode="offline") as proxy:
        replayed = calls(proxy.url)
    assert replayed == originals
    assert (
        fakes.bedrock.request_count,
        fakes.ollama.request_count,
        fakes.gemini.request_count,
    ) == upstream_calls
