"""Run any ASGI app on a real uvicorn server in a background thread (for tests).

    with run_server(app) as base_url:          # "http://127.0.0.1:<free port>"
        httpx2.get(f"{base_url}/health")

The socket is bound before the server starts (port 0 → a free port chosen by the OS),
so there is no race between picking a port and binding it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

__all__ = ["run_server"]


@contextmanager
def run_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    **config_kwargs: Any,
) -> Iterator[str]:
    """Serve ``app`` on ``host`` at a free port; yield its base URL; stop it on exit.

    Extra keyword arguments go to ``uvicorn.Config`` (e.g. ``timeout_graceful_shutdown``).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "loop": "asyncio",
        "interface": "asgi3",
        "lifespan": "on",
        "log_level": "warning",
        "timeout_graceful_shutdown": 2,
    }
    options.update(config_kwargs)
    config = uvicorn.Config(app, host=host, port=port, **options)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if errors or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"server failed to start: {errors[:1]!r}")
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            sock.close()
            raise RuntimeError("server did not start in time")
        time.sleep(0.005)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
