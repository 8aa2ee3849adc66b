"""Azure OpenAI: the OpenAI wire format under Azure's paths, auth and error shape.

Routes: ``/openai/deployments/{deployment}/chat/completions``, ``/completions``, ``/embeddings``
(the deployment, in the path, stands for the model; ``?api-version=`` is required and, like every
query parameter but a credential, enters the key), and the v1 API ``/openai/v1/chat/completions``,
``/completions``, ``/embeddings``, ``/responses`` (the body's ``model`` names the deployment).

Streams, conversions and usage are OpenAI's (``llm_cache.providers.openai``); Azure's extra
first chunk (empty ``choices``, ``prompt_filter_results``) merges into the full answer as a
top-level field, as Azure's own JSON answers carry it. Auth travels in the ``api-key`` header (or
an Entra ID bearer token): a credential, never keyed or stored. Errors:
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import orjson

from llm_cache.providers.base import RouteSpec
from llm_cache.providers.openai import CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, OpenAIProvider

__all__ = ["PROVIDER", "AzureOpenAIProvider"]

_DEPLOYMENT = "/openai/deployments/{deployment}"
_V1 = "/openai/v1"


class AzureOpenAIProvider(OpenAIProvider):
    name = "azure"
    routes = (  # type: ignore[assignment]  # more routes than OpenAI's
        RouteSpec(_DEPLOYMENT + CHAT, CHAT),
        RouteSpec(_DEPLOYMENT + COMPLETIONS, COMPLETIONS),
        RouteSpec(_DEPLOYMENT + EMBEDDINGS, EMBEDDINGS),
        RouteSpec(_V1 + CHAT, CHAT),
        RouteSpec(_V1 + COMPLETIONS, COMPLETIONS),
        RouteSpec(_V1 + EMBEDDINGS, EMBEDDINGS),
        RouteSpec(_V1 + RESPONSES, RESPONSES),
    )
    mount = ""
    base_url_setting = "azure_openai_base_url"
    passthrough_prefixes = ("/openai/",)

    def error_body(self, status: int, message: str, error_type: str) -> bytes:
        return orjson.dumps({"error": {"code": error_type, "message": message}})


PROVIDER = AzureOpenAIProvider()
