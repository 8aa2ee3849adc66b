"""Bad input gets a 4xx in the provider's error shape, never a 5xx (issue 9 item 4), limits,
honest health (item 5) and no credential in the settings printout (item 6), plus a fuzz test."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_cache.cache.sqlite_storage import SQLiteStorage
from llm_cache.config import Config
from tests.conftest import Proxy, ProxyFactory, Upstream
from tests.proxy.test_openai_proxy import MESSAGES, chat_raw, client_for

AUTH = {"authorization": "Bearer sk-test"}
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def raw_request(url: str, request_line_and_headers: bytes, body: bytes = b"") -> bytes:
    """Send bytes exactly as given (no client-side path normalization); the raw answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request_line_and_headers + b"\r\n" + body)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and b"content-length" in b"".join(chunks).lower():
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    break
        return b"".join(chunks)


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [253, 400, 5000])
def test_deeply_nested_json_is_a_400(proxy: Proxy, upstream: Upstream, depth: int) -> None:
    deep = "[" * depth + '"x"' + "]" * depth  # spelled out: json.dumps itself cannot go this deep
    payload = '{"model": "m", "messages": ' + json.dumps(MESSAGES) + ', "extra": ' + deep + "}"
    r = httpx2.post(
        f"{proxy.openai_base}/chat/completions",
        content=payload,
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    a = httpx2.post(
        f"{proxy.url}/v1/messages",
        content='{"model": "c", "max_tokens": 5, "messages": [], "x": ' + deep + "}",
        headers=ANTHROPIC_HEADERS,
    )
    assert a.status_code == 400 and a.json()["type"] == "error"
    assert upstream.fake.request_count == 0


def test_integers_past_64_bits_are_keyed_exactly(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    first = chat_raw(client, extra_body={"seed": 2**64})
    second = chat_raw(client, extra_body={"seed": 2**64 + 1})
    again = chat_raw(client, extra_body={"seed": 2**64})
    assert first.headers["x-cache-key"] != second.headers["x-cache-key"]
    assert second.headers["x-cache-status"] == "MISS"
    assert again.headers["x-cache-status"] == "HIT"


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/../x",
        b"/v1/%2e%2e/x",
        b"/v1/./chat/completions",
        b"/v1/chat%00/completions",
        b"/v1/chat%0d%0aX-Injected:%201/completions",
    ],
)
def test_paths_that_could_leave_the_upstream_are_refused(
    proxy: Proxy, upstream: Upstream, path: bytes
) -> None:
    answer = raw_request(
        proxy.url,
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n",
        b"{}",
    )
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    assert b'"error"' in answer
    assert upstream.fake.request_count == 0


def test_body_over_the_limit_is_a_413_without_reading_the_rest(
    start_proxy: ProxyFactory, upstream: Upstream
) -> None:
    with start_proxy(max_body_bytes=2000) as proxy:
        big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]})
        r = httpx2.post(
            f"{proxy.openai_base}/chat/completions",
            content=big,
            headers={**AUTH, "content-type": "application/json"},
        )
        assert r.status_code == 413
        assert "LLM_CACHE_MAX_BODY_BYTES" in r.json()["error"]["message"]
        assert upstream.fake.request_count == 0
        assert chat_raw(client_for(proxy)).headers["x-cache-status"] == "MISS"  # still serving


def test_more_than_200_headers_is_a_431(proxy: Proxy, upstream: Upstream) -> None:
    headers = [(f"x-h-{i}", "v") for i in range(250)]
    r = httpx2.post(
        f"{proxy.openai_base}/chat/completions",
        json={"model": "m", "messages": MESSAGES},
        headers=[*AUTH.items(), *headers],
    )
    assert r.status_code == 431
    assert upstream.fake.request_count == 0


# -- honest health -----------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 384 KiB file system (tmpfs): a disk that fills up for real."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_health_is_degraded_while_stores_fail_on_a_full_disk(
    start_proxy: ProxyFactory, upstream: Upstream, tiny_disk: Path
) -> None:
    storage = SQLiteStorage(db_path=str(tiny_disk / "cache.db"), max_size=100_000)
    with start_proxy(storage=storage) as proxy:
        client = client_for(proxy)
        chat_raw(client, messages=[{"role": "user", "content": "before the disk filled"}])
        assert httpx2.get(f"{proxy.url}/health").json()["status"] == "healthy"
        with open(tiny_disk / "filler", "wb", buffering=0) as filler:  # another program fills it
            try:
                while True:
                    filler.write(os.urandom(4096))
            except OSError:
                pass
        answers = [
            chat_raw(
                client,
                messages=[{"role": "user", "content": f"q{i} " + os.urandom(8).hex() * 50}],
                extra_headers={"x-fake-size": "20000"},
            )
            for i in range(20)
        ]
        # Every request was answered although nothing could be stored (fail open)...
        assert all(a.parse().choices[0].message.content for a in answers)
        health = httpx2.get(f"{proxy.url}/health").json()
        # ...and health says so instead of "healthy".
        assert health["status"] == "degraded", health
        assert "store" in health["error"]


def test_config_printout_masks_passwords_in_upstream_urls() -> None:
    config = Config(
        env={
            "LLM_CACHE_OPENAI_BASE_URL": "https://user:hunter2@gateway.example/v1",
            "LLM_CACHE_UPSTREAMS": "g=https://a:s3cret@h.example/v1",
        },
        dotenv_path=None,
    )
    text = repr(config) + json.dumps(config.to_dict())
    assert "hunter2" not in text and "s3cret" not in text


# -- fuzz --------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bad_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=10), json_values, max_size=5).map(
        lambda d: json.dumps({**d, "_cache_ttl_bad": True}).encode()
    ),
    st.text(max_size=60).map(lambda t: ('{"model": "m", "messages": ' + t).encode()),
)
bad_headers = st.dictionaries(
    st.sampled_from(["x-cache-ttl", "x-cache-bypass", "cache-control", "content-type"]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12),
    max_size=3,
)
routes = st.sampled_from(
    ["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"]
)


requests = st.tuples(routes, bad_bodies, bad_headers)


@pytest.mark.timeout(600)
def test_fuzz_malformed_requests_never_5xx_and_store_nothing(
    proxy: Proxy, upstream: Upstream
) -> None:
    """2,000+ generated malformed requests, sent 100 at a time (hypothesis draws each batch)."""
    sent: list[int] = []
    server_errors: list[tuple[str, bytes, dict[str, str], int, str]] = []

    async def send_batch(batch: list[tuple[str, bytes, dict[str, str]]]) -> None:
        async with httpx2.AsyncClient(timeout=30) as client:

            async def one(path: str, body: bytes, headers: dict[str, str]) -> None:
                r = await client.post(
                    f"{proxy.url}{path}",
                    content=body,
                    headers={**AUTH, **ANTHROPIC_HEADERS, **headers, "x-fake-status": "400"},
                )
                sent.append(r.status_code)
                if r.status_code >= 500:
                    server_errors.append((path, body[:80], headers, r.status_code, r.text[:200]))

            await asyncio.gather(*(one(*request) for request in batch))

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(requests, min_size=100, max_size=100))
    def batches(batch: list[tuple[str, bytes, dict[str, str]]]) -> None:
        asyncio.run(send_batch(batch))

    batches()
    assert len(sent) >= 2000
    assert server_errors == []
    assert proxy.app.storage.get_size() == 0
    assert httpx2.get(f"{proxy.url}/health").json()["status"] == "healthy"
    assert chat_raw(client_for(proxy)).headers["x-cache-status"] == "MISS"  # still serving


def test_openai_sdk_errors_on_bad_input_are_typed(proxy: Proxy, upstream: Upstream) -> None:
    client = client_for(proxy)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"deep": nested(300)}
        )
