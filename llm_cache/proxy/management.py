"""The management API under ``/cache/*``: stats, clear, delete one entry (SPEC "Management")."""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import parse_qs

from llm_cache.cache.storage import CacheStorage
from llm_cache.proxy.http import Scope, Send, send_json

logger = logging.getLogger("llm_cache.proxy")


def admin_credential(token: str | None) -> bytes | None:
    """The exact ``Authorization`` header value management calls must carry, if any."""
    return f"Bearer {token}".encode() if token else None


async def handle_management(
    scope: Scope,
    send: Send,
    storage: CacheStorage,
    admin: bytes | None,
    stats_extra: dict[str, Any],
) -> None:
    """Answer one ``/cache/*`` call. ``stats_extra`` joins the ``/cache/stats`` body."""
    if admin is not None:
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, admin):  # constant time: no token timing oracle
            await send_json(
                send,
                401,
                _error(
                    "missing or wrong admin token (Authorization: Bearer <token>)", "unauthorized"
                ),
                [(b"www-authenticate", b"Bearer")],
            )
            return
    path, method = scope["path"], scope["method"]
    try:
        if path == "/cache/stats" and method == "GET":
            stats = await storage.aget_stats()
            stats.update(stats_extra)
            await send_json(send, 200, stats)
        elif path == "/cache/clear" and method == "POST":
            await storage.aclear()
            await send_json(send, 200, {"status": "success", "message": "Cache cleared"})
        elif path == "/cache/entry" and method == "DELETE":
            keys = parse_qs(scope["query_string"].decode("latin-1")).get("key")
            if not keys:
                await send_json(send, 400, _error("the key query parameter is required"))
            elif await storage.adelete(keys[0]):
                await send_json(send, 200, {"status": "success", "message": "Entry deleted"})
            else:
                await send_json(send, 404, _error("no entry with that key", "not_found"))
        else:
            await send_json(send, 404, _error(f"no management route {method} {path}", "not_found"))
    except Exception as exc:
        logger.warning("management call %s %s failed: %s", method, path, exc)
        await send_json(send, 503, _error(f"storage failed: {exc}", "storage_error"))


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}
