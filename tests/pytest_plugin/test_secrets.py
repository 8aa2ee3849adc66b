"""Credentials: kept out of recorded requests, and a scan that refuses key-shaped text."""

from __future__ import annotations

import secrets

import pytest

from llm_cache.testing.secrets import clean_url, credential_values, find_secrets

KEYS = {
    "openai": "sk-proj-" + secrets.token_urlsafe(40),
    "anthropic": "sk-ant-api03-" + secrets.token_urlsafe(60),
    "google": "AIza" + "Sy" + secrets.token_hex(16) + "x",
    "groq": "gsk_" + secrets.token_hex(20),
    "aws": "AKIA" + "ABCDEFGHIJ234567",
    "huggingface": "hf_" + secrets.token_hex(17),
}


@pytest.mark.parametrize("name", sorted(KEYS))
def test_key_shapes_are_found_with_their_path(name: str) -> None:
    document = {"interactions": [{"request": {"body": {"prompt": f"use {KEYS[name]} now"}}}]}
    (finding,) = find_secrets(document)
    assert finding.path == "interactions[0].request.body.prompt"
    assert KEYS[name] not in finding.describe()  # the message never repeats the key


def test_ids_and_ordinary_text_are_not_findings() -> None:
    document = {
        "id": "chatcmpl-fake0000011b1e9ec0abcdefghijklmnop",
        "task": "task-manager-sk-like-but-not-a-key-at-all",
        "text": "ask-for-more-and-more-and-more-details please",
        "msg": "msg_01XFDUDYJgAACzvnptvVoYEL",
    }
    assert find_secrets(document) == []


def test_a_sent_credential_is_found_whatever_its_shape() -> None:
    credential = secrets.token_hex(16)
    sent = credential_values([("Authorization", f"Bearer {credential}")], "https://x/v1")
    assert sent == {credential}
    (finding,) = find_secrets({"body": {"echo": f"<{credential}>"}}, sent)
    assert finding.kind == "a credential this test sent"
    assert finding.path == "body.echo"


def test_object_keys_are_scanned_too() -> None:
    assert [f.path for f in find_secrets({"a": {KEYS["openai"]: 1}})] == [f"a.{KEYS['openai']}"]


def test_clean_url_drops_credentials_only() -> None:
    url = "https://user:pw@example.com/v1beta/models/g:generateContent?alt=sse&key=AIzaXYZ&x=1"
    assert clean_url(url) == "https://example.com/v1beta/models/g:generateContent?alt=sse&x=1"
    plain = "https://api.openai.com/v1/chat/completions"
    assert clean_url(plain) == plain
    assert credential_values([], "https://h/p?key=" + "k" * 20) == {"k" * 20}
