"""The Bedrock descriptor: routes, event-stream end of stream, conversions boto3 accepts."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx2
import orjson
import pytest
from botocore.config import Config as BotoConfig

from llm_cache.providers.bedrock import PROVIDER
from llm_cache.providers.eventstream import EVENTSTREAM, EventStreamMessage, parse_eventstream
from tests.fake_providers.bedrock import BedrockFake, create_bedrock_fake
from tests.providers.replay import serve_answer
from tests.servers import run_server

NOVA = "amazon.nova-lite-v1:0"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
CHAT = {"messages": [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]}
TOOLS = {
    **CHAT,
    "toolConfig": {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {}}}},
                }
            }
        ]
    },
}
CLAUDE_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 200,
    "messages": [{"role": "user", "content": "Hello"}],
}


@pytest.fixture(autouse=True)
def _no_imds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    fake: BedrockFake = create_bedrock_fake()
    with run_server(fake.app) as base:
        yield base


def post(url: str, model: str, op: str, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(
        f"{url}/model/{model}/{op}",
        headers={"authorization": "Bearer bedrock-api-key-test"},
        json=body,
    )


def boto(url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDX",
        aws_secret_access_key="x",
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )


def test_routes_model_and_key_headers() -> None:
    m = PROVIDER.match("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream")
    assert m is not None and m.endpoint == "converse" and PROVIDER.wants_stream(m, {})
    assert PROVIDER.model(m, {}) == CLAUDE  # percent-decoded
    m = PROVIDER.match(f"/model/{NOVA}/converse")
    assert m is not None and not PROVIDER.wants_stream(m, {"stream": True})
    i = PROVIDER.match(f"/model/{NOVA}/invoke-with-response-stream")
    assert i is not None and i.endpoint == "invoke" and PROVIDER.wants_stream(i, {})
    assert PROVIDER.match(f"/model/{NOVA}/apply-guardrail") is None
    assert "x-amzn-bedrock-guardrailidentifier" in PROVIDER.key_headers
    assert not any(h.startswith(("x-amz-", "amz-sdk")) for h in PROVIDER.key_headers)
    assert "authorization" not in PROVIDER.key_headers
    assert PROVIDER.excluded_fields_for("converse") == frozenset()


@pytest.mark.parametrize("body", [CHAT, TOOLS], ids=["text", "tool"])
def test_converse_stream_to_full(url: str, body: dict[str, Any]) -> None:
    full = post(url, NOVA, "converse", body).json()
    frames = parse_eventstream(post(url, NOVA, "converse-stream", body).content)
    assert PROVIDER.stream_finished("converse", frames)
    merged = PROVIDER.events_to_response("converse", frames)
    assert merged is not None
    assert {k: v for k, v in merged.items() if k != "metrics"} == {
        k: v for k, v in full.items() if k != "metrics"
    }
    assert PROVIDER.usage_tokens("converse", merged) == PROVIDER.usage_tokens("converse", full)
    with serve_answer("application/json", orjson.dumps(merged)) as replay:
        r = boto(replay).converse(modelId=NOVA, **body)
    assert r["output"] == full["output"]


@pytest.mark.parametrize("body", [CHAT, TOOLS], ids=["text", "tool"])
def test_converse_full_to_stream_read_by_boto3(url: str, body: dict[str, Any]) -> None:
    full = post(url, NOVA, "converse", body).json()
    frames = PROVIDER.response_to_events("converse", full, body)
    assert frames is not None and PROVIDER.stream_finished("converse", frames)
    assert PROVIDER.events_to_response("converse", frames) == full  # round trip
    with serve_answer("application/vnd.amazon.eventstream", EVENTSTREAM.encode(frames)) as replay:
        events = list(boto(replay).converse_stream(modelId=NOVA, **body)["stream"])
    assert next(iter(events[0])) == "messageStart"
    assert events[-1]["metadata"]["usage"] == full["usage"]


def test_reasoning_blocks_round_trip() -> None:
    full = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hm", "signature": "sig"}}},
                    {"text": "Paris"},
                ],
            }
        },
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
        "metrics": {"latencyMs": 5},
    }
    frames = PROVIDER.response_to_events("converse", full, {})
    assert frames is not None
    assert PROVIDER.events_to_response("converse", frames) == full
    odd = {**full, "output": {"message": {"role": "assistant", "content": [{"video": {}}]}}}
    assert PROVIDER.response_to_events("converse", odd, {}) is None


def test_invoke_anthropic_both_ways(url: str) -> None:
    full = post(url, CLAUDE, "invoke", CLAUDE_BODY).json()
    frames = parse_eventstream(
        post(url, CLAUDE, "invoke-with-response-stream", CLAUDE_BODY).content
    )
    assert PROVIDER.stream_finished("invoke", frames)
    merged = PROVIDER.events_to_response("invoke", frames)
    assert merged is not None
    assert merged["content"] == full["content"] and merged["stop_reason"] == full["stop_reason"]
    assert PROVIDER.usage_tokens("invoke", merged) == PROVIDER.usage_tokens("invoke", full)
    back = PROVIDER.response_to_events("invoke", full, CLAUDE_BODY)
    assert back is not None and PROVIDER.stream_finished("invoke", back)
    with serve_answer("application/vnd.amazon.eventstream", EVENTSTREAM.encode(back)) as replay:
        s = boto(replay).invoke_model_with_response_stream(
            modelId=CLAUDE, body=json.dumps(CLAUDE_BODY)
        )
        chunks = [json.loads(e["chunk"]["bytes"]) for e in s["body"]]
    text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
    assert text == full["content"][0]["text"]
    assert (
        chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"]
        == full["usage"]["output_tokens"]
    )


def test_invoke_other_models_do_not_convert(url: str) -> None:
    llama = "meta.llama3-8b-instruct-v1:0"
    full = post(url, llama, "invoke", {"prompt": "Hi"}).json()
    assert PROVIDER.response_to_events("invoke", full, {"prompt": "Hi"}) is None
    frames = parse_eventstream(
        post(url, llama, "invoke-with-response-stream", {"prompt": "Hi"}).content
    )
    assert PROVIDER.stream_finished("invoke", frames)  # complete: it is stored as a stream
    assert PROVIDER.events_to_response("invoke", frames) is None  # but not served as JSON
    usage = PROVIDER.usage_tokens("invoke", full)
    assert usage is not None and usage.output == full["generation_token_count"]
    emb = post(url, "amazon.titan-embed-text-v2:0", "invoke", {"inputText": "a"}).json()
    assert PROVIDER.usage_tokens("invoke", emb).input == emb["inputTextTokenCount"]  # type: ignore[union-attr]


def test_failed_or_cut_streams(url: str) -> None:
    frames = parse_eventstream(post(url, NOVA, "converse-stream", CHAT).content)
    assert not PROVIDER.stream_finished("converse", frames[:-1])  # no metadata yet
    assert not PROVIDER.stream_finished("converse", [])
    error = EventStreamMessage.for_exception("throttlingException", b'{"message":"slow"}')
    assert not PROVIDER.stream_finished("converse", [*frames, error])
    assert PROVIDER.events_to_response("converse", [*frames[:2], error]) is None
    invoke = parse_eventstream(
        post(url, CLAUDE, "invoke-with-response-stream", CLAUDE_BODY).content
    )
    assert not PROVIDER.stream_finished("invoke", invoke[:-1])
    bad = EventStreamMessage.for_event("chunk", b'{"bytes": "not base64!"}')
    assert not PROVIDER.stream_finished("invoke", [*invoke[:-1], bad])
    good_chunk = json.loads(base64.b64decode(json.loads(invoke[-1].payload)["bytes"]))
    assert good_chunk["type"] == "message_stop"


def test_error_shape() -> None:
    body = orjson.loads(PROVIDER.error_body(429, "slow down", "rate_limit"))
    assert body == {"message": "slow down", "__type": "ThrottlingException"}
    assert (
        orjson.loads(PROVIDER.error_body(404, "x", "cache_miss"))["__type"] == "CacheMissException"
    )
    assert PROVIDER.body_is_error("converse", body)
    assert not PROVIDER.body_is_error("converse", {"output": {}, "stopReason": "end_turn"})
    assert not PROVIDER.body_is_error("invoke", {"generation": "x", "message": "hm"})
