"""What the proxy stores, and what it never caches: driven by the official SDKs.

* Only valid answers are stored: a 2xx whose body is an error, or is not JSON, passes through
  unchanged and is never stored, whatever the endpoint and whichever kind the client asked for.
* ``/v1/responses`` echoes ``metadata`` and ``user``, so they enter its key.
* Requests whose answer depends on mutable server-side state are forwarded uncached
  (``X-Cache-Status: BYPASS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.conftest import Proxy, Upstream
from tests.proxy.test_openai_proxy import MESSAGES

KNOBS = {"x-fake-error-200": "1", "x-fake-not-json": "1"}


def oai(proxy: Proxy) -> openai.OpenAI:
    # A short timeout and no retries: a proxy that loops on an answer fails the test quickly.
    return openai.OpenAI(base_url=proxy.openai_base, api_key="sk-test", max_retries=0, timeout=10)


def claude(proxy: Proxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant", max_retries=0, timeout=10)


Call = Callable[[Proxy, dict[str, str], bool], Any]

CALLS: dict[str, tuple[str, Call]] = {
    "chat": (
        "/chat/completions",
        lambda p, h, s: oai(p).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=s, extra_headers=h
        ),
    ),
    "completions": (
        "/v1/completions",
        lambda p, h, s: oai(p).completions.with_raw_response.create(
            model="gpt-3.5-turbo-instruct", prompt="Hi", stream=s, extra_headers=h
        ),
    ),
    "responses": (
        "/responses",
        lambda p, h, s: oai(p).responses.with_raw_response.create(
            model="gpt-4o-mini", input="Hi", stream=s, extra_headers=h
        ),
    ),
    "messages": (
        "/messages",
        lambda p, h, s: claude(p).messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES, stream=s, extra_headers=h
        ),
    ),
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("knob", list(KNOBS))
@pytest.mark.parametrize("endpoint", list(CALLS))
def test_a_2xx_error_or_non_json_body_passes_through_and_is_never_stored(
    proxy: Proxy, upstream: Upstream, endpoint: str, knob: str, stream: bool
) -> None:
    path, call = CALLS[endpoint]
    bodies = []
    for _ in range(2):
        raw = call(proxy, {knob: "1"}, stream)
        assert raw.status_code == 200
        assert raw.headers["x-cache-hit"] == "false"
        assert raw.headers["x-cache-status"] == "MISS"
        bodies.append(raw.http_response.read())
    # Passed through as the upstream sent it, never stored, never retried by the proxy.
    assert bodies[0] == bodies[1]
    if knob == "x-fake-not-json":
        assert bodies[0] == b"<html>bad gateway</html>"
    else:
        error = orjson.loads(bodies[0])
        assert error["error"]
        assert error.get("type") == ("error" if endpoint == "messages" else None)
    assert upstream.fake.count(path) == 2
    assert proxy.app.storage.get_size() == 0
    # The same request without the fault is stored and then answered from the cache.
    first = call(proxy, {}, stream)
    first.http_response.read()
    second = call(proxy, {}, stream)
    second.http_response.read()
    assert (first.headers["x-cache-hit"], second.headers["x-cache-hit"]) == ("false", "true")
    assert upstream.fake.count(path) == 3


def test_embeddings_error_bodies_are_not_stored_but_lists_are(
    proxy: Proxy, upstream: Upstream
) -> None:
    client = oai(proxy)
    for knob in KNOBS:
        for _ in range(2):
            raw = client.embeddings.with_raw_response.create(
                model="text-embedding-3-small", input="hello", extra_headers={knob: "1"}
            )
            assert raw.headers["x-cache-hit"] == "false"
    assert proxy.app.storage.get_size() == 0
    one = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi")
    two = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi")
    assert one.parse().object == "list"
    assert (one.headers["x-cache-hit"], two.headers["x-cache-hit"]) == ("false", "true")
    assert upstream.fake.count("/embeddings") == 5


def test_responses_with_error_null_and_incomplete_answers_are_stored(
    proxy: Proxy, upstream: Upstream
) -> None:
    client = oai(proxy)
    for kwargs in ({}, {"max_output_tokens": 3}):
        first = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi", **kwargs)
        again = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi", **kwargs)
        answer = first.parse()
        assert orjson.loads(first.http_response.content)["error"] is None
        assert answer.status == ("incomplete" if kwargs else "completed")
        assert again.headers["x-cache-hit"] == "true"
        assert again.parse().id == answer.id
    assert upstream.fake.count("/responses") == 2


# ---------------------------------------------------------------------- echoed fields
def test_responses_metadata_and_user_enter_the_key(proxy: Proxy, upstream: Upstream) -> None:
    client = oai(proxy)

    def ask(**kwargs: Any) -> Any:
        return client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi", **kwargs)

    a = ask(metadata={"run": "1"}, user="alice")
    b = ask(metadata={"run": "2"}, user="alice")
    c = ask(metadata={"run": "1"}, user="bob")
    again = ask(metadata={"run": "1"}, user="alice")
    keys = {r.headers["x-cache-key"] for r in (a, b, c)}
    assert len(keys) == 3
    assert [r.headers["x-cache-hit"] for r in (a, b, c, again)] == ["false"] * 3 + ["true"]
    # Each client gets its own values back, as the API echoes them.
    assert b.parse().metadata == {"run": "2"} and c.parse().user == "bob"
    assert again.parse().metadata == {"run": "1"} and again.parse().user == "alice"
    assert upstream.fake.count("/responses") == 3


def test_chat_metadata_and_user_still_stay_out_of_the_key(proxy: Proxy, upstream: Upstream) -> None:
    client = oai(proxy)
    one = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, user="alice", metadata={"run": "1"}
    )
    two = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, user="bob", metadata={"run": "2"}
    )
    assert two.headers["x-cache-hit"] == "true"
    assert two.headers["x-cache-key"] == one.headers["x-cache-key"]


# ---------------------------------------------------------------------- server-side state
NEVER_CACHED_RESPONSES: list[tuple[str, dict[str, Any]]] = [
    ("conversation id", {"conversation": "conv_68b1"}),
    ("conversation object", {"conversation": {"id": "conv_68b1"}}),
    ("prompt without version", {"prompt": {"id": "pmpt_123", "variables": {"city": "Paris"}}}),
    ("prompt at latest", {"prompt": {"id": "pmpt_123", "version": "latest"}}),
]


@pytest.mark.parametrize(("what", "extra"), NEVER_CACHED_RESPONSES, ids=lambda x: str(x))
def test_responses_on_server_state_are_forwarded_uncached(
    proxy: Proxy, upstream: Upstream, what: str, extra: dict[str, Any]
) -> None:
    client = oai(proxy)
    for stream in (False, False, True):
        raw = client.responses.with_raw_response.create(
            model="gpt-4o-mini", input="Hi", stream=stream, **extra
        )
        assert raw.headers["x-cache-status"] == "BYPASS", what
        assert raw.headers["x-cache-hit"] == "false"
        if stream:
            events = list(raw.parse())
            assert events[-1].type == "response.completed"
        else:
            assert raw.parse().status == "completed"
    assert upstream.fake.count("/responses") == 3
    assert upstream.fake.last_request.body == {
        "model": "gpt-4o-mini",
        "input": "Hi",
        "stream": True,
        **extra,
    }
    assert proxy.app.storage.get_size() == 0


def test_a_pinned_prompt_version_is_cached(proxy: Proxy, upstream: Upstream) -> None:
    client = oai(proxy)
    prompt = {"id": "pmpt_123", "version": "4", "variables": {"city": "Paris"}}
    one = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi", prompt=prompt)
    two = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Hi", prompt=prompt)
    other = client.responses.with_raw_response.create(
        model="gpt-4o-mini", input="Hi", prompt={**prompt, "version": "5"}
    )
    statuses = [r.headers["x-cache-status"] for r in (one, two, other)]
    assert statuses == ["MISS", "HIT", "MISS"]
    assert upstream.fake.count("/responses") == 2


NEVER_CACHED_MESSAGES: list[tuple[str, Any]] = [
    ("container id", "container_011CQ"),
    ("container object with id", {"id": "container_011CQ"}),
    (
        "skill at latest",
        {"skills": [{"type": "anthropic", "skill_id": "pptx", "version": "latest"}]},
    ),
    ("skill without version", {"skills": [{"type": "custom", "skill_id": "skill_01"}]}),
]


@pytest.mark.parametrize(("what", "container"), NEVER_CACHED_MESSAGES, ids=lambda x: str(x))
def test_anthropic_container_reuse_is_forwarded_uncached(
    proxy: Proxy, upstream: Upstream, what: str, container: Any
) -> None:
    client = claude(proxy)
    for _ in range(2):
        raw = client.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES, container=container
        )
        assert raw.headers["x-cache-status"] == "BYPASS", what
        assert raw.parse().content[0].type == "text"
    assert upstream.fake.count("/messages") == 2
    assert upstream.fake.last_request.body["container"] == container
    assert proxy.app.storage.get_size() == 0


def test_a_new_container_with_pinned_skills_is_cached(proxy: Proxy, upstream: Upstream) -> None:
    client = claude(proxy)
    container = {"skills": [{"type": "anthropic", "skill_id": "pptx", "version": "20251013"}]}
    statuses = [
        client.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES, container=container
        ).headers["x-cache-status"]
        for _ in range(2)
    ]
    assert statuses == ["MISS", "HIT"]
    assert upstream.fake.count("/messages") == 1
