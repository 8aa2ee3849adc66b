"""The miss diff: JSON paths, aligned lists, long strings, type changes, and the nearest pick."""

from __future__ import annotations

from pathlib import Path

from llm_cache.testing.cassette import Cassette, Interaction
from llm_cache.testing.diff import diff, format_differences
from llm_cache.testing.explain import MissContext, explain_miss, nearest
from llm_cache.testing.modes import Mode


def lines(recorded: object, now: object) -> list[str]:
    return format_differences(diff(recorded, now, "body"))


def test_short_strings_are_shown_side_by_side() -> None:
    recorded = {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "a"}]}
    now = {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "b"}]}
    assert lines(recorded, now) == ["body.messages[1].content: 'a' != 'b'"]


def test_a_long_string_shows_where_it_changed() -> None:
    before = "Get the current weather for a city. Answer in degrees Celsius, rounded."
    after = before.replace("Celsius", "Fahrenheit")
    recorded = {"tools": [{"type": "function", "function": {"description": before}}]}
    now = {"tools": [{"type": "function", "function": {"description": after}}]}
    out = lines(recorded, now)
    assert out[0] == (
        f"body.tools[0].function.description changed at character {before.index('Celsius')} "
        f"(recorded {len(before)} characters, now {len(after)}):"
    )
    assert "Celsius" in out[1] and out[1].lstrip().startswith("recorded: …")
    assert "Fahrenheit" in out[2] and out[2].lstrip().startswith("now:      …")


def test_added_removed_and_type_changes() -> None:
    out = lines(
        {"model": "m", "top_p": 0.9, "max_tokens": 100, "n": 1},
        {"model": "m", "max_tokens": "100", "n": 1.0, "temperature": 0.2},
    )
    assert out == [
        "body.top_p: removed (recorded 0.9)",
        "body.max_tokens: 100 != '100' (integer → string)",
        "body.n: 1 != 1.0 (integer → float)",
        "body.temperature: added (now 0.2)",
    ]


def test_an_inserted_message_is_one_difference_not_a_shifted_list() -> None:
    chat = [{"role": "user", "content": f"question {i}"} for i in range(4)]
    now = [{"role": "system", "content": "Be brief."}, *chat]
    assert lines({"messages": chat}, {"messages": now}) == [
        "body.messages[0]: inserted {'role': 'system', 'content': 'Be brief.'}"
    ]
    assert lines({"messages": now}, {"messages": chat}) == [
        "body.messages[0]: removed (recorded {'role': 'system', 'content': 'Be brief.'})"
    ]


def test_keys_that_are_not_identifiers_are_quoted() -> None:
    assert lines({"a-b": 1}, {"a-b": 2}) == ['body["a-b"]: 1 != 2']


def test_many_differences_are_cut_with_a_count() -> None:
    out = format_differences(diff(list(range(40)), list(range(1, 41)), "x"), limit=5)
    assert len(out) == 6 and out[-1] == "… and 35 more differences"


def request(content: str, url: str = "https://api.openai.com/v1/chat/completions") -> dict:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    return {"method": "POST", "url": url, "headers": {}, "body": body}


def test_nearest_prefers_the_same_endpoint_then_fewest_differences() -> None:
    recorded = [
        request("hello", url="https://api.openai.com/v1/embeddings"),
        request("hello world"),
        request("something else entirely"),
    ]
    found = nearest(request("hello"), recorded, position=0)
    assert found is not None
    index, differences = found
    assert index == 1
    assert [d.path for d in differences] == ["body.messages[0].content"]


def test_nearest_ignores_fields_outside_the_key() -> None:
    """``stream``/``user`` do not decide a match, so they never appear as the cause."""
    live = request("hello")
    live["body"].update(user="someone", temperature=0.5)
    found = nearest(live, [request("hello")], position=0)
    assert found is not None
    assert [d.text for d in found[1]] == ["body.temperature: added (now 0.5)"]


def test_query_parameters_are_compared_one_by_one() -> None:
    live = {"method": "GET", "url": "https://h/v1/models?page=2&limit=10", "headers": {}}
    recorded = {"method": "GET", "url": "https://h/v1/models?page=1&limit=10", "headers": {}}
    found = nearest(live, [recorded], position=0)
    assert found is not None
    assert [d.text for d in found[1]] == ["query.page: '1' != '2'"]


def test_a_request_to_an_endpoint_never_recorded_lists_what_is_recorded() -> None:
    chat = request("hello")
    embeddings = {
        "method": "POST",
        "url": "https://api.openai.com/v1/embeddings",
        "headers": {},
        "body": {"model": "text-embedding-3-small", "input": "hello"},
    }
    cassette = Cassette(Path("c.json"), [Interaction(chat, {"status": 200})] * 2, exists=True)
    mode = Mode("replay", "default under CI=true")
    context = MissContext(cassette, "cassettes/t/test_x.json", mode, "pytest a", "pytest b")
    text = explain_miss(embeddings, context, position=2, replayed=2)
    assert "  request:   POST https://api.openai.com/v1/embeddings (request 3 of this test)" in text
    assert "  recorded:  2 interactions, 2 replayed so far in this run" in text
    assert (
        "No recorded request goes to this endpoint. The cassette has:\n"
        "  POST https://api.openai.com/v1/chat/completions (2 recorded)"
    ) in text
    assert "differs" not in text
