"""A streamed miss reaches the client frame by frame in each framing (NDJSON, event-stream, SSE).

The simulated upstream waits between frames; the client must see the first frame long before the
upstream has sent the last one (no buffering of the whole stream in the proxy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import boto3
import cohere
import ollama
import pytest
from botocore.config import Config as BotoConfig

from tests.proxy.more_providers.conftest import Fakes, Proxy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:cohere")
DELAY_MS = 150


def arrival_times(start: Callable[[], Iterable[Any]]) -> list[float]:
    t0 = time.monotonic()
    times = []
    for _ in start():
        times.append(time.monotonic() - t0)
    return times


def check_incremental(times: list[float]) -> None:
    assert len(times) >= 5
    total = times[-1]
    assert total >= (len(times) - 2) * DELAY_MS / 1000 * 0.8  # the upstream really paced it
    assert times[0] < total / 2  # the first frame came long before the end


def test_ollama_ndjson(proxy: Proxy, fakes: Fakes) -> None:
    fakes.ollama.chunk_delay_ms = DELAY_MS
    c = ollama.Client(host=proxy.url)
    msgs = [{"role": "user", "content": "Tell me a rather long story please"}]
    check_incremental(arrival_times(lambda: c.chat(model="llama3.2", messages=msgs, stream=True)))


def test_bedrock_event_stream(proxy: Proxy, fakes: Fakes) -> None:
    fakes.bedrock.chunk_delay_ms = DELAY_MS
    c = boto3.client(
        "bedrock-runtime",
        endpoint_url=proxy.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDFAKECLIENT000001",
        aws_secret_access_key="client-secret-key",
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )
    msgs = [{"role": "user", "content": [{"text": "Tell me a rather long story please"}]}]
    check_incremental(
        arrival_times(
            lambda: c.converse_stream(modelId="amazon.nova-lite-v1:0", messages=msgs)["stream"]
        )
    )


def test_cohere_typed_sse(proxy: Proxy, fakes: Fakes) -> None:
    fakes.cohere.chunk_delay_ms = DELAY_MS
    c = cohere.ClientV2(api_key="k", base_url=proxy.url, max_retries=0)
    msgs = [{"role": "user", "content": "Tell me a rather long story please"}]
    check_incremental(
        arrival_times(lambda: c.chat_stream(model="command-a-03-2025", messages=msgs))
    )  # type: ignore[arg-type]
