"""A one-answer HTTP server: serves fixed bytes to any request, to show an SDK a converted answer.

with serve_answer("text/event-stream", body) as url:
    sdk_client(base_url=url).stream(...)   # the SDK parses exactly these bytes
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.servers import run_server


@contextmanager
def serve_answer(content_type: str, body: bytes, status: int = 200) -> Iterator[str]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    with run_server(app) as url:
        yield url
