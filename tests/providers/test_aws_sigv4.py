"""Re-signing Bedrock requests: a request boto3 signed for one host, re-signed by us, is
accepted by the simulated Bedrock runtime, whose SigV4 check is an independent implementation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx2
import pytest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from llm_cache.providers.aws_sigv4 import SigV4Signer, strip_client_auth, upstream_auth
from tests.fake_providers.bedrock import BedrockFake, create_bedrock_fake
from tests.servers import run_server

NOVA = "amazon.nova-lite-v1:0"
BODY = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}


@pytest.fixture(autouse=True)
def _isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer profile, no instance metadata: the chain sees only what a test sets."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


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


def client_request(url: str, fake: BedrockFake) -> tuple[str, list[tuple[str, str]], bytes]:
    """What boto3 sends when its credentials are not the upstream's: path, headers, body."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDSOMEONEELSE",
        aws_secret_access_key="whatever",
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError):
        client.converse(modelId=NOVA, **BODY)
    rec = fake.last_request
    return rec.raw_path, list(rec.headers.items()), rec.raw_body


def proxy_signer(token: bool = False) -> SigV4Signer:
    if token:
        creds = Credentials("ASIAFAKETEMPORARY001", "temp-secret-key", "temp-session-token")
    else:
        creds = Credentials("AKIDFAKEPROXY0000001", "proxy-secret-key")
    return SigV4Signer(lambda: creds, "us-east-1")


@pytest.mark.parametrize("token", [False, True])
def test_a_boto3_request_re_signed_is_accepted(url: str, fake: BedrockFake, token: bool) -> None:
    raw_path, headers, body = client_request(url, fake)
    assert raw_path == "/model/amazon.nova-lite-v1%3A0/converse"
    assert any(k == "amz-sdk-invocation-id" for k, _ in headers)
    signed = proxy_signer(token).sign("POST", f"{url}{raw_path}", headers, body)
    names = [k.lower() for k, _ in signed]
    assert names.count("authorization") == 1 and names.count("x-amz-date") == 1
    assert "amz-sdk-invocation-id" not in names and "host" not in names
    assert ("x-amz-security-token" in names) is token
    r = httpx2.post(f"{url}{raw_path}", headers=signed, content=body)
    assert r.status_code == 200, r.text
    assert r.json()["stopReason"] == "end_turn"
    expected = "ASIAFAKETEMPORARY001" if token else "AKIDFAKEPROXY0000001"
    assert fake.identities == [expected]


def test_the_signature_covers_body_path_and_bedrock_headers(url: str, fake: BedrockFake) -> None:
    raw_path, headers, body = client_request(url, fake)
    signed = proxy_signer().sign(
        "POST", f"{url}{raw_path}", [*headers, ("X-Amzn-Bedrock-Trace", "ENABLED")], body
    )
    other_body = json.dumps({**BODY, "inferenceConfig": {"temperature": 1}}).encode()
    tampered = [(k, v) for k, v in signed if k.lower() != "content-length"]
    r = httpx2.post(f"{url}{raw_path}", headers=tampered, content=other_body)
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    other_path = raw_path.replace("nova-lite", "nova-pro")
    assert httpx2.post(f"{url}{other_path}", headers=signed, content=body).status_code == 403
    untraced = [(k, v) for k, v in signed if k.lower() != "x-amzn-bedrock-trace"]
    assert httpx2.post(f"{url}{raw_path}", headers=untraced, content=body).status_code == 403
    assert httpx2.post(f"{url}{raw_path}", headers=signed, content=body).status_code == 200


def test_wrong_region_is_refused_upstream(url: str, fake: BedrockFake) -> None:
    raw_path, headers, body = client_request(url, fake)
    creds = Credentials("AKIDFAKEPROXY0000001", "proxy-secret-key")
    signed = SigV4Signer(lambda: creds, "eu-west-1").sign("POST", f"{url}{raw_path}", headers, body)
    r = httpx2.post(f"{url}{raw_path}", headers=signed, content=body)
    assert r.status_code == 403 and "region" in r.json()["message"]


def test_from_environment(monkeypatch: pytest.MonkeyPatch, url: str, fake: BedrockFake) -> None:
    assert SigV4Signer.from_environment("us-east-1") is None  # nothing in the chain
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFAKEPROXY0000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "proxy-secret-key")
    with pytest.raises(ValueError, match="LLM_CACHE_AWS_REGION"):
        SigV4Signer.from_environment(None)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    signer = SigV4Signer.from_environment(None)
    assert signer is not None and signer.region == "us-east-1"
    assert SigV4Signer.from_environment("eu-central-1").region == "eu-central-1"  # type: ignore[union-attr]
    raw_path, headers, body = client_request(url, fake)
    r = httpx2.post(
        f"{url}{raw_path}",
        headers=signer.sign("POST", f"{url}{raw_path}", headers, body),
        content=body,
    )
    assert r.status_code == 200


def test_profile_from_shared_credentials_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        "[team]\naws_access_key_id = AKIDFAKEPROXY0000001\n"
        "aws_secret_access_key = proxy-secret-key\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    signer = SigV4Signer.from_environment("us-east-1", profile="team")
    assert signer is not None


def test_upstream_auth_without_credentials() -> None:
    sigv4 = [
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/bedrock/aws4_request, "
            "SignedHeaders=host, Signature=" + "0" * 64,
        ),
        ("X-Amz-Date", "20260101T000000Z"),
        ("Content-Type", "application/json"),
    ]
    assert upstream_auth(None, "POST", "http://u/model/m/converse", sigv4, b"{}") is None
    bearer = [
        ("authorization", "Bearer bedrock-api-key-test"),
        ("amz-sdk-request", "attempt=1"),
        ("content-type", "application/json"),
    ]
    out = upstream_auth(None, "POST", "http://u/model/m/converse", bearer, b"{}")
    assert out == [
        ("content-type", "application/json"),
        ("authorization", "Bearer bedrock-api-key-test"),
    ]
    assert upstream_auth(None, "POST", "u", [("authorization", "Bearer ")], b"") is None
    assert strip_client_auth([("X-Amz-Security-Token", "t"), ("Host", "h"), ("Accept", "a")]) == [
        ("Accept", "a")
    ]


def test_upstream_auth_with_signer_prefers_our_signature(url: str, fake: BedrockFake) -> None:
    headers: list[Any] = [
        ("authorization", "Bearer client-key"),
        ("content-type", "application/json"),
    ]
    body = json.dumps(BODY).encode()
    path = "/model/amazon.nova-lite-v1%3A0/converse"
    out = upstream_auth(proxy_signer(), "POST", f"{url}{path}", headers, body)
    assert out is not None
    assert not any(v == "Bearer client-key" for _, v in out)
    assert httpx2.post(f"{url}{path}", headers=out, content=body).status_code == 200
    assert fake.identities == ["AKIDFAKEPROXY0000001"]


def test_a_region_is_required() -> None:
    with pytest.raises(ValueError, match="region"):
        SigV4Signer(lambda: None, "")
