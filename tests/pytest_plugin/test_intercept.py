"""Interception in-process: the Player wired into real httpx/httpx2 clients over real HTTP.

Complements the subprocess tests with cases that need control of the server: NDJSON streams
(Ollama's framing), gzip-encoded answers, a stream the caller abandons, a stream the upstream
cuts, and the libraries being left untouched once a test is over.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from llm_cache.testing.cassette import Cassette
from llm_cache.testing.explain import MissContext
from llm_cache.testing.intercept import activate, deactivate
from llm_cache.testing.modes import Mode
from llm_cache.testing.player import CassetteMiss, Player
from tests.conftest import Upstream
from tests.servers import run_server

LINES = [{"message": {"content": f"part {i}"}, "done": i == 4} for i in range(5)]


async def ollama_like(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/api/chat``: an NDJSON stream, one line per send; ``/gz``: a gzip-encoded JSON body."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/gz":
        body = gzip.compress(json.dumps({"zipped": True}).encode())
        headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers = [(b"content-type", b"application/x-ndjson")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for line in LINES:
        chunk = json.dumps(line).encode() + b"\n"
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def server() -> Iterator[str]:
    with run_server(ollama_like) as url:
        yield url


class Session:
    """One simulated test: a player over a cassette path, active inside ``with``."""

    def __init__(self, path: Path, mode: str, ignore_hosts: tuple[str, ...] = ()) -> None:
        cassette = Cassette.load(path)
        self.mode = Mode(mode, "from the test")
        context = MissContext(cassette, str(path), self.mode, "pytest x --rec", "pytest x --new")
        self.player = Player(cassette, self.mode, context, ignore_hosts)

    def __enter__(self) -> Player:
        activate(self.player)
        return self.player

    def __exit__(self, *exc: object) -> None:
        deactivate(self.player)
        self.player.save("test_x")


def chat(client: httpx.Client, url: str) -> list[Any]:
    with client.stream("POST", f"{url}/api/chat", json={"model": "llama3", "messages": []}) as r:
        return [json.loads(line) for line in r.iter_lines() if line]


def test_ndjson_streams_record_and_replay_line_by_line(server: str, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with Session(path, "once"), httpx.Client() as client:
        assert chat(client, server) == LINES
    recorded = json.loads(path.read_text())["interactions"][0]["response"]
    assert recorded["content_type"] == "application/x-ndjson"
    assert recorded["events"] == LINES

    body = {"model": "llama3", "messages": []}
    with Session(path, "replay") as player, httpx.Client() as client:
        with client.stream("POST", f"{server}/api/chat", json=body) as response:
            chunks = list(response.iter_raw())
        assert [json.loads(c) for c in chunks] == LINES  # one line per chunk, as recorded
        assert player.replayed == 1


def test_async_clients_of_both_libraries(server: str, tmp_path: Path) -> None:
    path = tmp_path / "c.json"

    async def run() -> list[Any]:
        seen: list[Any] = []
        for lib in (httpx, httpx2):
            async with lib.AsyncClient() as client:  # type: ignore[attr-defined]
                async with client.stream("POST", f"{server}/api/chat", json={"n": 1}) as r:
                    seen.append([json.loads(x) async for x in r.aiter_lines() if x])
                seen.append((await client.get(f"{server}/gz")).json())
        return seen

    with Session(path, "once"):
        first = asyncio.run(run())
    assert first == [LINES, {"zipped": True}] * 2
    assert len(json.loads(path.read_text())["interactions"]) == 4
    with Session(path, "replay") as player:
        assert asyncio.run(run()) == first
        assert player.replayed == 4


def test_gzip_answers_are_recorded_decoded(server: str, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with Session(path, "once"), httpx2.Client() as client:
        response = client.get(f"{server}/gz")
        assert response.json() == {"zipped": True}
        assert "content-encoding" not in response.headers
    recorded = json.loads(path.read_text())["interactions"][0]
    assert recorded["request"] == {"method": "GET", "url": f"{server}/gz", "headers": {}}
    assert recorded["response"]["body"] == {"zipped": True}


def test_an_abandoned_stream_is_recorded_whole(server: str, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with Session(path, "once"), httpx.Client() as client:
        with client.stream("POST", f"{server}/api/chat", json={}) as response:
            first = next(response.iter_lines())
        assert json.loads(first) == LINES[0]
    assert json.loads(path.read_text())["interactions"][0]["response"]["events"] == LINES


def test_a_stream_cut_by_the_upstream_is_not_recorded(upstream: Upstream, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"authorization": "Bearer sk-test", "x-fake-abort-after": "2"}
    with Session(path, "once") as player, httpx2.Client() as client:
        url = f"{upstream.url}/v1/chat/completions"
        with pytest.raises(httpx2.HTTPError):  # noqa: SIM117 - the raise is in the stream
            with client.stream("POST", url, json=body, headers=headers) as response:
                for _ in response.iter_bytes():
                    pass
        assert player.recorded() == []
    assert not path.exists()


def test_a_replay_miss_raises_with_the_explanation(server: str, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with Session(path, "once"), httpx2.Client() as client:
        client.post(f"{server}/gz", json={"q": "recorded"})
    with Session(path, "replay") as player, httpx2.Client() as client:
        with pytest.raises(CassetteMiss) as caught:
            client.post(f"{server}/gz", json={"q": "changed"})
        assert player.misses == [str(caught.value)]
    assert "body.q: 'recorded' != 'changed'" in str(caught.value)
    assert "pytest x --rec" in str(caught.value)


def test_nothing_is_intercepted_outside_a_test(server: str, tmp_path: Path) -> None:
    originals = (httpx.HTTPTransport.handle_request, httpx2.AsyncHTTPTransport.handle_async_request)
    with Session(tmp_path / "c.json", "replay"):
        assert httpx.HTTPTransport.handle_request is not originals[0]
    assert (httpx.HTTPTransport.handle_request, httpx2.AsyncHTTPTransport.handle_async_request) == (
        originals
    )
    assert httpx.get(f"{server}/gz").json() == {"zipped": True}  # reaches the network again


def test_ignored_hosts_pass_through_in_every_mode(server: str, tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    with Session(path, "replay", ignore_hosts=("127.0.0.1",)) as player, httpx2.Client() as c:
        assert c.get(f"{server}/gz").json() == {"zipped": True}  # no cassette, yet no miss
        assert player.requests == 0 and player.misses == []
    assert not path.exists()
