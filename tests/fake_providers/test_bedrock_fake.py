"""The simulated Bedrock runtime speaks the real wire format: boto3's bedrock-runtime reads it.

boto3 signs every request with SigV4 and the fake verifies the signature with its own,
independent implementation (``tests/fake_providers/sigv4.py``), so these tests also check that
checker against botocore.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx2
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, EventStreamError

from tests.fake_providers.bedrock import BedrockFake, create_bedrock_fake
from tests.servers import run_server

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-lite-v1:0"
CHAT = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]


@pytest.fixture(autouse=True)
def _no_aws_surprises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[BedrockFake, str]]:
    fake = create_bedrock_fake()
    with run_server(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[BedrockFake, str]) -> BedrockFake:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[BedrockFake, str], fake: BedrockFake) -> str:
    return server[1]


def make_client(
    url: str,
    key: str = "AKIDFAKECLIENT000001",
    secret: str = "client-secret-key",
    region: str = "us-east-1",
    token: str | None = None,
) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def client(url: str) -> Any:
    return make_client(url)


def test_converse(client: Any, fake: BedrockFake) -> None:
    r = client.converse(modelId=NOVA, messages=CHAT)
    text = r["output"]["message"]["content"][0]["text"]
    assert "[h=" in text and r["stopReason"] == "end_turn"
    assert r["usage"]["totalTokens"] == r["usage"]["inputTokens"] + r["usage"]["outputTokens"]
    req = fake.last_request
    assert req.raw_path == "/model/amazon.nova-lite-v1%3A0/converse"
    assert fake.identities == ["AKIDFAKECLIENT000001"]  # the SigV4 signature checked out
    again = client.converse(modelId=NOVA, messages=CHAT)
    assert again["output"] == r["output"] and again["metrics"] != r["metrics"]
    other = client.converse(modelId=CLAUDE, messages=CHAT)
    assert other["output"] != r["output"]
    hotter = client.converse(modelId=NOVA, messages=CHAT, inferenceConfig={"temperature": 0.2})
    assert hotter["output"] != r["output"]


def test_converse_stream_matches_converse(client: Any) -> None:
    full = client.converse(modelId=NOVA, messages=CHAT)
    r = client.converse_stream(modelId=NOVA, messages=CHAT)
    events = list(r["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert text == full["output"]["message"]["content"][0]["text"]
    assert events[-1]["metadata"]["usage"] == full["usage"]
    assert (
        r["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    )


def test_tool_use_both_ways(client: Any) -> None:
    tools = {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {
                        "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                    },
                }
            }
        ]
    }
    r = client.converse(modelId=NOVA, messages=CHAT, toolConfig=tools)
    assert r["stopReason"] == "tool_use"
    use = r["output"]["message"]["content"][1]["toolUse"]
    events = list(client.converse_stream(modelId=NOVA, messages=CHAT, toolConfig=tools)["stream"])
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "get_weather"
    args = "".join(
        e["contentBlockDelta"]["delta"]["toolUse"]["input"]
        for e in events
        if "contentBlockDelta" in e and "toolUse" in e["contentBlockDelta"]["delta"]
    )
    assert json.loads(args) == use["input"]


def test_invoke_anthropic_both_ways(client: Any) -> None:
    body = json.dumps(
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "Hello"}],
        }
    )
    r = client.invoke_model(modelId=CLAUDE, body=body)
    message = json.loads(r["body"].read())
    assert message["type"] == "message" and "[h=" in message["content"][0]["text"]
    assert r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-output-token-count"]
    s = client.invoke_model_with_response_stream(modelId=CLAUDE, body=body)
    chunks = [json.loads(e["chunk"]["bytes"]) for e in s["body"]]
    assert chunks[0]["type"] == "message_start" and chunks[-1]["type"] == "message_stop"
    assert "amazon-bedrock-invocationMetrics" in chunks[-1]
    text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
    assert text == message["content"][0]["text"]


def test_invoke_llama_and_titan_embeddings(client: Any) -> None:
    r = client.invoke_model(
        modelId="meta.llama3-8b-instruct-v1:0", body=json.dumps({"prompt": "Hi"})
    )
    gen = json.loads(r["body"].read())
    assert "[h=" in gen["generation"] and gen["stop_reason"] == "stop"
    s = client.invoke_model_with_response_stream(
        modelId="meta.llama3-8b-instruct-v1:0", body=json.dumps({"prompt": "Hi"})
    )
    chunks = [json.loads(e["chunk"]["bytes"]) for e in s["body"]]
    assert "".join(c["generation"] for c in chunks) == gen["generation"]
    e = client.invoke_model(
        modelId="amazon.titan-embed-text-v2:0", body=json.dumps({"inputText": "a"})
    )
    emb = json.loads(e["body"].read())
    assert len(emb["embedding"]) == 8 and emb["inputTextTokenCount"] == 1


def test_sigv4_is_really_checked(url: str, fake: BedrockFake) -> None:
    wrong_secret = make_client(url, secret="not-the-secret")
    with pytest.raises(ClientError) as info:
        wrong_secret.converse(modelId=NOVA, messages=CHAT)
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    wrong_region = make_client(url, region="eu-west-1")
    with pytest.raises(ClientError) as info:
        wrong_region.converse(modelId=NOVA, messages=CHAT)
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    unknown = make_client(url, key="AKIDUNKNOWN")
    with pytest.raises(ClientError) as info:
        unknown.converse(modelId=NOVA, messages=CHAT)
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
    temp = make_client(
        url, key="ASIAFAKETEMPORARY001", secret="temp-secret-key", token="temp-session-token"
    )
    assert temp.converse(modelId=NOVA, messages=CHAT)["stopReason"] == "end_turn"
    unsigned = httpx2.post(f"{url}/model/{NOVA}/converse", json={"messages": CHAT})
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException")
    bearer = httpx2.post(
        f"{url}/model/{NOVA}/converse",
        headers={"authorization": "Bearer bedrock-api-key-test"},
        json={"messages": CHAT},
    )
    assert bearer.status_code == 200 and bearer.json()["stopReason"] == "end_turn"
    assert fake.identities.count("ASIAFAKETEMPORARY001") == 1


def test_errors_and_stream_exceptions(client: Any, fake: BedrockFake) -> None:
    fake.status = 429
    with pytest.raises(ClientError) as info:
        client.converse(modelId=NOVA, messages=CHAT)
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    fake.status = None
    with pytest.raises(ClientError) as info:
        client.converse(modelId="missing-model", messages=CHAT)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    fake.error_after = 2
    with pytest.raises(EventStreamError) as stream_err:
        list(client.converse_stream(modelId=NOVA, messages=CHAT)["stream"])
    assert "modelStreamErrorException" in str(stream_err.value)
    fake.error_after = None
    fake.abort_after = 2
    with pytest.raises(Exception):  # noqa: B017 - urllib3's protocol error, via botocore
        list(client.converse_stream(modelId=NOVA, messages=CHAT)["stream"])


def test_padding_differs_but_decodes(client: Any, url: str) -> None:
    """Payloads carry AWS's ``p`` filler, which boto3 ignores; the raw frames show it."""
    from llm_cache.providers.eventstream import parse_eventstream

    r = httpx2.post(
        f"{url}/model/{NOVA}/converse-stream",
        headers={"authorization": "Bearer bedrock-api-key-test"},
        json={"messages": CHAT},
    )
    frames = parse_eventstream(r.content)
    assert all("p" in json.loads(f.payload) for f in frames)
    assert frames[0].event_type == "messageStart" and frames[-1].event_type == "metadata"
