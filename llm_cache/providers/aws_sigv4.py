"""Upstream authentication for Bedrock: re-sign with the proxy's own AWS credentials (SigV4).

A boto3 client pointed at the proxy signs its request for the proxy's host, so the signature
cannot be forwarded: AWS would recompute it for its own host and refuse it. The proxy therefore
drops the client's signature headers and either

* signs the request anew with its own credentials (the standard AWS chain: environment,
  shared config/credentials files and profile, container or instance roles) for the upstream
  URL, region ``LLM_CACHE_AWS_REGION`` (else the AWS region settings), service ``bedrock``; or
* when it has no credentials, forwards the client's ``Authorization: Bearer`` Bedrock API key.

Without either, :func:`upstream_auth` returns ``None`` and the caller answers a clear error.
botocore does the signing (extra ``[bedrock]``); it is imported only when a signer is made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "CLIENT_AUTH_HEADERS",
    "SigV4Signer",
    "strip_client_auth",
    "upstream_auth",
]

#: Headers of the client's own signature: never forwarded upstream (nor stored, nor keyed).
CLIENT_AUTH_HEADERS = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "host"}
)
_CLIENT_AUTH_PREFIXES = ("amz-sdk-",)
#: Headers the new signature covers (besides ``host``): those AWS reads to decide the answer.
_SIGNED_PREFIXES = ("x-amz-", "x-amzn-")
_SIGNED = frozenset({"content-type", "accept"})

Header = tuple[str, str]


def _is_client_auth(name: str) -> bool:
    lname = name.lower()
    return lname in CLIENT_AUTH_HEADERS or lname.startswith(_CLIENT_AUTH_PREFIXES)


def strip_client_auth(headers: Iterable[Header]) -> list[Header]:
    """The headers without the client's signature, token, date and SDK bookkeeping."""
    return [(k, v) for k, v in headers if not _is_client_auth(k)]


def _botocore() -> tuple[Any, Any, Any]:
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.session import Session
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "Re-signing Bedrock requests needs botocore: pip install 'llm-caching[bedrock]'"
        ) from exc
    return SigV4Auth, AWSRequest, Session


class SigV4Signer:
    """Signs upstream requests with one set of AWS credentials for one region.

    ``credentials`` is a callable returning botocore credentials (it is called per request, so
    refreshable credentials — SSO, roles — stay fresh).
    """

    def __init__(
        self, credentials: Callable[[], Any], region: str, service: str = "bedrock"
    ) -> None:
        if not region:
            raise ValueError(
                "Bedrock needs an AWS region: set LLM_CACHE_AWS_REGION (or AWS_REGION)"
            )
        self._credentials = credentials
        self.region = region
        self.service = service

    @classmethod
    def from_environment(
        cls, region: str | None = None, *, profile: str | None = None
    ) -> SigV4Signer | None:
        """A signer from the standard AWS credential chain, or ``None`` when it finds none.

        ``region``: the proxy's setting; when empty, ``AWS_REGION``, then the AWS configuration's
        region (``AWS_DEFAULT_REGION``, the profile's ``region``).
        """
        _, _, session_cls = _botocore()
        session = session_cls(profile=profile)
        creds = session.get_credentials()
        if creds is None:
            return None
        chosen = region or os.environ.get("AWS_REGION") or session.get_config_variable("region")
        if not chosen:
            raise ValueError(
                "AWS credentials were found but no region: set LLM_CACHE_AWS_REGION (or AWS_REGION)"
            )
        return cls(creds.get_frozen_credentials, chosen)

    def sign(self, method: str, url: str, headers: Iterable[Header], body: bytes) -> list[Header]:
        """The headers to send upstream: the client's own signature replaced by ours.

        ``url`` is the exact upstream URL (its path percent-encoded as it will be sent).
        """
        sigv4_cls, request_cls, _ = _botocore()
        kept = strip_client_auth(headers)
        to_sign = [
            (k, v)
            for k, v in kept
            if k.lower() in _SIGNED or k.lower().startswith(_SIGNED_PREFIXES)
        ]
        others = [
            (k, v)
            for k, v in kept
            if not (k.lower() in _SIGNED or k.lower().startswith(_SIGNED_PREFIXES))
        ]
        request = request_cls(method=method.upper(), url=url, headers=dict(to_sign), data=body)
        sigv4_cls(self._credentials(), self.service, self.region).add_auth(request)
        return others + [(k, str(v)) for k, v in request.headers.items()]


def upstream_auth(
    signer: SigV4Signer | None,
    method: str,
    url: str,
    headers: Iterable[Header],
    body: bytes,
) -> list[Header] | None:
    """Headers that authenticate the request upstream, or ``None`` when nothing can.

    With a signer: re-signed. Without: the client's ``Authorization: Bearer`` key is forwarded
    (a SigV4 ``Authorization`` is not: it was made for the proxy's host).
    """
    headers = list(headers)
    if signer is not None:
        return signer.sign(method, url, headers, body)
    bearer = next(
        (
            v
            for k, v in headers
            if k.lower() == "authorization" and v[:7].lower() == "bearer " and v[7:].strip()
        ),
        None,
    )
    if bearer is None:
        return None
    return [*strip_client_auth(headers), ("authorization", bearer)]
