"""A simulated Azure OpenAI resource (``https://<resource>.openai.azure.com``).

Azure speaks the OpenAI wire format, so this reuses the OpenAI simulation of
``tests/fake_upstream.py`` for the answers and adds what Azure does differently:

* Routes ``POST /openai/deployments/{deployment}/chat/completions``, ``/completions``,
  ``/embeddings`` with a required ``?api-version=`` (404 ``Resource not found`` without), where
  the body's ``model`` is optional (the deployment decides); and the v1 API
  ``POST /openai/v1/chat/completions`` … (``model`` names the deployment, ``api-version``
  optional). A deployment named ``missing…`` is 404 ``DeploymentNotFound``.
* Auth: ``api-key`` header, or ``Authorization: Bearer`` (an Entra ID token); 401 without.
* Answers hash the deployment and the ``api-version`` too, so a cache that drops either from
  its key serves a visibly wrong answer.
* Chat answers carry Azure's content-filter annotations: ``prompt_filter_results`` in the JSON,
  and a first stream chunk with empty ``choices`` and ``prompt_filter_results`` (as Azure sends).
* Errors: ``{"error": {"code": …, "message": …}}``.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fake_providers._base import read_request
from tests.fake_upstream import FakeUpstream, RecordedRequest, _Call, _json, request_hash

__all__ = ["AzureFake", "create_azure_fake"]

_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)$")
_V1 = re.compile(r"^/openai/v1/(chat/completions|completions|embeddings|responses)$")
_FILTERS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
_PROMPT_FILTERS = [{"prompt_index": 0, "content_filter_results": _FILTERS}]


class _AzureCall(_Call):
    """An OpenAI call answered the Azure way."""

    def __init__(self, fake: AzureFake, send: Any, rec: RecordedRequest, route: list[str]) -> None:
        body = rec.body
        if isinstance(body, dict) and "model" not in body and route[0] == "deployments":
            body = {**body, "model": route[1]}  # the deployment stands for the model
        super().__init__(fake, send, rec.method, rec.path, rec.headers, body)  # type: ignore[arg-type]
        self.anthropic = False
        self.original_body = rec.body
        self.route = route

    def hash(self, kind: str) -> str:
        return request_hash(f"{kind}|{self.route}", self.original_body, self.headers)

    async def check_auth(self) -> bool:
        auth = self.headers.get("authorization", "")
        if self.headers.get("api-key") or (auth.lower().startswith("bearer ") and len(auth) > 7):
            return True
        await self.send_error(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource.",
        )
        return False

    async def send_error(self, status: int, message: str, error_type: str | None = None) -> None:
        code = error_type or str(status)
        extra = [(b"retry-after", b"7")] if status == 429 else []
        saved, self.abort_after = self.abort_after, None
        try:
            await self.send_json(status, {"error": {"code": code, "message": message}}, extra)
        finally:
            self.abort_after = saved

    async def send_json(
        self, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        if status == 200 and isinstance(obj, dict) and obj.get("object") == "chat.completion":
            obj = {**obj, "prompt_filter_results": _PROMPT_FILTERS}
            for choice in obj.get("choices", []):
                choice["content_filter_results"] = _FILTERS
        await super().send_json(status, obj, extra)

    async def send_sse(self, events: list[bytes]) -> None:
        if self.path.endswith("/chat/completions"):
            first = {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": _PROMPT_FILTERS,
            }
            events = [b"data: " + _json(first) + b"\n\n", *events]
        await super().send_sse(events)


class AzureFake(FakeUpstream):
    """The Azure simulation's state and knobs (those of ``FakeUpstream``)."""

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        read = await read_request(scope, receive)
        if read is None:
            return
        got, bad_json = read
        qs = scope.get("query_string", b"").decode("latin-1")
        rec = RecordedRequest(got.method, got.path, got.headers, got.body, got.raw_body, qs)
        self.requests.append(rec)
        query = got.query
        m = _DEPLOYMENT.match(rec.path)
        v1 = _V1.match(rec.path)
        if m is not None:
            route = ["deployments", m.group(1), query.get("api-version", "")]
        elif v1 is not None:
            model = rec.body.get("model") if isinstance(rec.body, dict) else None
            route = ["v1", str(model), query.get("api-version", "")]
        else:
            route = ["unknown", rec.path, ""]
        call = _AzureCall(self, send, rec, route)
        if route[0] == "unknown" or (route[0] == "deployments" and not route[2]):
            await call.send_error(404, "Resource not found", "404")
            return
        if route[1].startswith("missing"):
            await call.send_error(
                404,
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
                "DeploymentNotFound",
            )
            return
        await call.handle(bad_json)


def create_azure_fake(**knobs: Any) -> AzureFake:
    return AzureFake(**knobs)
