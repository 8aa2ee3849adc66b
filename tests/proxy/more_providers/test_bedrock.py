"""Bedrock through the real proxy, boto3's bedrock-runtime as the client (SPEC: More providers).

boto3 signs each request for the proxy's host with the client's credentials; the proxy drops
that signature and re-signs for the upstream with its own (``AKIDFAKEPROXY0000001``), which the
simulated Bedrock verifies with its own SigV4 implementation. Without credentials of its own the
proxy forwards a Bedrock API key (``Authorization: Bearer``) and refuses anything else.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx2
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, EventStreamError

from tests.proxy.more_providers.conftest import PROXY_AKID, Fakes, Proxy, ProxyFactory, stored_bytes

NOVA = "amazon.nova-lite-v1:0"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
CHAT = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
CLIENT_SECRET = "client-secret-key"
CLAUDE_BODY = json.dumps(
    {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "Hello"}],
    }
)


def client(url: str, **kwargs: Any) -> Any:
    kwargs.setdefault("aws_access_key_id", "AKIDFAKECLIENT000001")
    kwargs.setdefault("aws_secret_access_key", CLIENT_SECRET)
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        config=BotoConfig(retries={"total_max_attempts": 1}),
        **kwargs,
    )


def stream_events(c: Any, model: str = NOVA, messages: Any = CHAT) -> list[dict[str, Any]]:
    return list(c.converse_stream(modelId=model, messages=messages)["stream"])


def test_miss_then_hit_re_signed_with_the_proxy_credentials(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    first = c.converse(modelId=NOVA, messages=CHAT)
    second = c.converse(modelId=NOVA, messages=CHAT)
    assert fakes.bedrock.request_count == 1
    assert second["metrics"] == first["metrics"]  # unique per upstream call
    assert second["output"] == first["output"]
    assert fakes.bedrock.identities == [PROXY_AKID]  # re-signed by the proxy, verified upstream
    assert second["ResponseMetadata"]["HTTPHeaders"]["x-cache-status"] == "HIT"


def test_streamed_miss_then_streamed_hit(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    one = stream_events(c)
    two = stream_events(c)
    assert fakes.bedrock.request_count == 1
    assert one == two and next(iter(one[-1])) == "metadata"


def test_conversions_both_ways(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    full = c.converse(modelId=NOVA, messages=CHAT)
    events = stream_events(c)
    assert fakes.bedrock.request_count == 1
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert text == full["output"]["message"]["content"][0]["text"]
    assert events[-1]["metadata"]["usage"] == full["usage"]
    other = [{"role": "user", "content": [{"text": "And Italy?"}]}]
    streamed = stream_events(c, messages=other)
    merged = c.converse(modelId=NOVA, messages=other)
    assert fakes.bedrock.request_count == 2
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in streamed if "contentBlockDelta" in e
    )
    assert merged["output"]["message"]["content"][0]["text"] == text
    assert merged["stopReason"] == "end_turn"


def test_invoke_anthropic_both_ways(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    full = json.loads(c.invoke_model(modelId=CLAUDE, body=CLAUDE_BODY)["body"].read())
    again = json.loads(c.invoke_model(modelId=CLAUDE, body=CLAUDE_BODY)["body"].read())
    s = c.invoke_model_with_response_stream(modelId=CLAUDE, body=CLAUDE_BODY)
    chunks = [json.loads(e["chunk"]["bytes"]) for e in s["body"]]
    assert fakes.bedrock.request_count == 1
    assert again == full
    text = "".join(x["delta"]["text"] for x in chunks if x["type"] == "content_block_delta")
    assert text == full["content"][0]["text"]


def test_model_or_parameter_change_is_a_miss(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    a = c.converse(modelId=NOVA, messages=CHAT)
    b = c.converse(modelId="amazon.nova-pro-v1:0", messages=CHAT)
    d = c.converse(modelId=NOVA, messages=CHAT, inferenceConfig={"temperature": 0.2})
    e = c.converse(
        modelId=NOVA,
        messages=CHAT,
        guardrailConfig={"guardrailIdentifier": "g", "guardrailVersion": "1"},
    )
    assert fakes.bedrock.request_count == 4
    assert len({json.dumps(x["output"]) for x in (a, b, d, e)}) == 4


def test_credentials_absent_from_storage(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url, aws_session_token="client-session-token-abc")
    c.converse(modelId=NOVA, messages=CHAT)
    c.converse(modelId=NOVA, messages=CHAT)
    stream_events(c)
    assert fakes.bedrock.request_count == 1
    data = stored_bytes(proxy.db)
    assert b"capital of France" in data
    for secret in (
        b"AKIDFAKECLIENT000001",
        b"client-session-token-abc",
        b"AWS4-HMAC-SHA256",
        b"proxy-secret-key",
        PROXY_AKID.encode(),
        b"amz-sdk-invocation-id",
    ):
        assert secret not in data


def test_offline_miss_in_bedrock_error_shape(start_proxy: ProxyFactory, fakes: Fakes) -> None:
    with start_proxy(mode="offline") as proxy:
        c = client(proxy.url)
        with pytest.raises(ClientError) as info:
            c.converse(modelId=NOVA, messages=CHAT)
        with pytest.raises(ClientError):
            stream_events(c)
    assert info.value.response["Error"]["Code"] == "CacheMissException"
    assert "offline" in info.value.response["Error"]["Message"]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert fakes.bedrock.request_count == 0


def test_stream_cut_midway_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.bedrock.abort_after = 2
    with pytest.raises(Exception):  # noqa: B017 - urllib3's protocol error, via botocore
        stream_events(c)
    fakes.bedrock.abort_after = None
    stream_events(c)
    assert fakes.bedrock.request_count == 2


def test_stream_with_an_exception_frame_is_not_stored(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.bedrock.error_after = 2
    with pytest.raises(EventStreamError):
        stream_events(c)
    fakes.bedrock.error_after = None
    stream_events(c)
    assert fakes.bedrock.request_count == 2


def test_upstream_errors_pass_through(proxy: Proxy, fakes: Fakes) -> None:
    c = client(proxy.url)
    fakes.bedrock.status = 429
    with pytest.raises(ClientError) as info:
        c.converse(modelId=NOVA, messages=CHAT)
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    fakes.bedrock.status = None
    c.converse(modelId=NOVA, messages=CHAT)
    assert fakes.bedrock.request_count == 2


def test_without_proxy_credentials_a_bearer_key_is_forwarded(
    start_proxy: ProxyFactory, fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with start_proxy() as proxy:
        signed = client(proxy.url)
        with pytest.raises(ClientError) as info:
            signed.converse(modelId=NOVA, messages=CHAT)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
        assert "cannot authenticate" in info.value.response["Error"]["Message"]
        assert fakes.bedrock.request_count == 0  # refused before reaching the upstream
        # boto3 sends a Bedrock API key over HTTPS only; raw HTTP clients may send it here.
        url = f"{proxy.url}/model/{NOVA}/converse"
        bearer = {"authorization": "Bearer bedrock-api-key-test"}
        r = httpx2.post(url, headers=bearer, json={"messages": CHAT})
        assert r.status_code == 200 and r.json()["stopReason"] == "end_turn"
        assert fakes.bedrock.last_request.headers["authorization"] == "Bearer bedrock-api-key-test"
        again = httpx2.post(url, headers=bearer, json={"messages": CHAT})
        assert again.headers["x-cache-status"] == "HIT" and again.json() == r.json()
        data = stored_bytes(proxy.db)
    assert b"bedrock-api-key-test" not in data
    assert fakes.bedrock.request_count == 1


def test_model_arn_with_escaped_slash(proxy: Proxy, fakes: Fakes) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0"
    c = client(proxy.url)
    first = c.converse(modelId=arn, messages=CHAT)
    second = c.converse(modelId=arn, messages=CHAT)
    assert fakes.bedrock.request_count == 1 and second["metrics"] == first["metrics"]
    assert "%2F" in fakes.bedrock.last_request.raw_path  # forwarded exactly as boto3 sent it
    assert fakes.bedrock.identities == [PROXY_AKID]


def test_through_the_httpx_transport(fakes: Fakes) -> None:
    """boto3 does not use httpx; the transport still caches Bedrock's wire format."""
    from llm_cache.cache.memory_storage import MemoryStorage
    from llm_cache.providers.eventstream import parse_eventstream
    from llm_cache.wrapper.transport import httpx_client

    headers = {"authorization": "Bearer bedrock-api-key-test"}
    with httpx_client(
        MemoryStorage(max_size=10), base_url=fakes.urls["bedrock"], headers=headers
    ) as http:
        a = http.post(f"/model/{NOVA}/converse-stream", json={"messages": CHAT})
        b = http.post(f"/model/{NOVA}/converse-stream", json={"messages": CHAT})
        full = http.post(f"/model/{NOVA}/converse", json={"messages": CHAT})
    assert b.headers["x-cache-status"] == "HIT" and b.content == a.content
    assert full.headers["x-cache-status"] == "HIT"
    frames = parse_eventstream(a.content)
    text = "".join(f.json()["delta"]["text"] for f in frames if f.event_type == "contentBlockDelta")
    assert full.json()["output"]["message"]["content"][0]["text"] == text
    assert fakes.bedrock.request_count == 1


def test_credentials_without_a_region_are_not_used(
    start_proxy: ProxyFactory, fakes: Fakes, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream URL set by hand, no region anywhere: the proxy cannot sign, and says so."""
    with start_proxy(aws_region=None) as proxy, pytest.raises(ClientError) as info:
        client(proxy.url).converse(modelId=NOVA, messages=CHAT)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    assert "no region" in caplog.text
    assert fakes.bedrock.request_count == 0
