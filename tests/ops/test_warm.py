"""``llm-cache warm --openai-batch``: a Batch job's answers become hits for the same requests.

The Batch output holds answers the simulated upstream really gave to those requests (fetched
over HTTP, as the Batch API would have run them); after ``warm``, an ``offline`` proxy answers
the same requests made with the OpenAI SDK from the cache, so nothing reaches the upstream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from tests.conftest import ProxyFactory, Upstream
from tests.ops.conftest import Cli, MakeBackend, openai_client

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "batch question 1"}]}
CHAT_2 = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "batch question 2"}],
    "temperature": 0.2,
}
# The SDK sends encoding_format (base64 unless told): a batch line must match what it sends.
EMBED = {"model": "text-embedding-3-small", "input": "batch embedding", "encoding_format": "float"}
FAILED = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "this one failed"}]}
UNANSWERED = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "never ran"}]}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def batch_files(tmp_path: Path, upstream: Upstream) -> tuple[Path, Path, dict[str, Any]]:
    requests = {
        "req-1": ("/v1/chat/completions", CHAT),
        "req-2": ("/v1/chat/completions", CHAT_2),
        "req-3": ("/v1/embeddings", EMBED),
        "req-4": ("/v1/chat/completions", FAILED),
        "req-5": ("/v1/chat/completions", UNANSWERED),
    }
    inputs = [
        {"custom_id": cid, "method": "POST", "url": url, "body": body}
        for cid, (url, body) in requests.items()
    ]
    answers: dict[str, Any] = {}
    outputs: list[dict[str, Any]] = []
    headers = {"authorization": "Bearer sk-batch"}
    for cid in ("req-1", "req-2", "req-3"):
        url, body = requests[cid]
        got = httpx2.post(f"{upstream.url}{url}", json=body, headers=headers, timeout=10)
        assert got.status_code == 200
        answers[cid] = got.json()
        outputs.append(
            {
                "id": f"batch_req_{cid}",
                "custom_id": cid,
                "response": {"status_code": 200, "request_id": "r", "body": got.json()},
                "error": None,
            }
        )
    outputs.append(
        {
            "id": "batch_req_4",
            "custom_id": "req-4",
            "response": None,
            "error": {"code": "server_error", "message": "boom"},
        }
    )
    outputs.append(
        {"id": "x", "custom_id": "not-in-input", "response": {"status_code": 200, "body": {}}}
    )
    return (
        write_jsonl(tmp_path / "in.jsonl", inputs),
        write_jsonl(tmp_path / "out.jsonl", outputs),
        answers,
    )


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_warmed_batch_answers_are_hits_through_the_proxy(
    start_proxy: ProxyFactory,
    upstream: Upstream,
    make_backend: MakeBackend,
    run_cli: Cli,
    tmp_path: Path,
    kind: str,
) -> None:
    backend = make_backend(kind)
    backend.env["LLM_CACHE_OPENAI_BASE_URL"] = f"{upstream.url}/v1"
    inp, out, answers = batch_files(tmp_path, upstream)
    upstream.fake.reset()

    result = run_cli(backend, "warm", "--openai-batch", str(inp), str(out))
    assert result.exit_code == 0, result.stderr
    assert "stored 3 answers" in result.stderr
    assert "1 failed in the batch, skipped" in result.stderr
    assert "1 requests without a result" in result.stderr
    assert "1 results without a request" in result.stderr

    with start_proxy(mode="offline", **backend.overrides) as proxy:
        client = openai_client(proxy)
        for cid, body in (("req-1", CHAT), ("req-2", CHAT_2)):
            raw = client.chat.completions.with_raw_response.create(**body)
            assert raw.headers["x-cache-hit"] == "true"
            assert orjson.loads(raw.http_response.content) == answers[cid]
        embed = client.embeddings.with_raw_response.create(**EMBED)  # type: ignore[arg-type]
        assert embed.headers["x-cache-hit"] == "true"
        assert orjson.loads(embed.http_response.content) == answers["req-3"]
        # A streamed request is answered from the warmed (non-streamed) entry too.
        chunks = list(client.chat.completions.create(**CHAT, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == answers["req-1"]["choices"][0]["message"]["content"]
        # The failed one was not stored: offline, it is a miss.
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(**FAILED)
    assert upstream.fake.request_count == 0


def test_bad_batch_files_name_the_line(
    make_backend: MakeBackend, run_cli: Cli, tmp_path: Path
) -> None:
    backend = make_backend("sqlite")
    good_in = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": CHAT}
    inp = write_jsonl(
        tmp_path / "in.jsonl", [good_in, {**good_in, "custom_id": "b", "url": "chat"}]
    )
    out = write_jsonl(tmp_path / "out.jsonl", [])
    result = run_cli(backend, "warm", "--openai-batch", str(inp), str(out))
    assert result.exit_code == 1
    assert f"{inp}:2: 'url' must be a path such as /v1/chat/completions" in result.stderr

    inp = write_jsonl(tmp_path / "in.jsonl", [good_in])
    out.write_bytes(b'{"custom_id": "a", "response": {"status_code": 200, "body": {}}}\n{oops\n')
    result = run_cli(backend, "warm", "--openai-batch", str(inp), str(out))
    assert result.exit_code == 1 and f"{out}:2: not valid JSON" in result.stderr
    assert backend.storage().get_size() == 0

    missing = run_cli(backend, "warm", "--openai-batch", str(inp), str(tmp_path / "none"))
    assert missing.exit_code == 1 and "no such file" in missing.stderr
    usage = run_cli(backend, "warm", "--openai-batch", str(inp))
    assert usage.exit_code == 2
