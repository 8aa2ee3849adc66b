"""An independent AWS Signature Version 4 checker, as the AWS front door runs it.

Written from the SigV4 specification, not from botocore, so that a test where botocore signs
(boto3 directly, or the proxy re-signing) and this module verifies checks two implementations
against each other. Non-S3 rules: the canonical URI is the wire path URI-encoded once more
(``%3A`` → ``%253A``), the payload hash is SHA-256 of the body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["Credentials", "SigV4Error", "verify_sigv4"]

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Credentials:
    secret_key: str
    session_token: str | None = None


class SigV4Error(Exception):
    """Why a request's signature is refused: ``code`` is the AWS error type."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def verify_sigv4(
    *,
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    credentials: dict[str, Credentials],
    region: str,
    service: str,
    now: dt.datetime | None = None,
) -> str:
    """Check the request's ``Authorization``; return the access key id, or raise SigV4Error."""
    m = _AUTH.match(headers.get("authorization", ""))
    if m is None:
        raise SigV4Error("IncompleteSignatureException", "Authorization header is malformed")
    akid = m["akid"]
    creds = credentials.get(akid)
    if creds is None:
        raise SigV4Error(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if m["region"] != region or m["service"] != service:
        raise SigV4Error(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region and service "
            f"({region}/{service}), not '{m['region']}/{m['service']}'.",
        )
    if (
        creds.session_token is not None
        and headers.get("x-amz-security-token") != creds.session_token
    ):
        raise SigV4Error(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise SigV4Error(
            "IncompleteSignatureException", "X-Amz-Date is missing or malformed"
        ) from None
    current = now or dt.datetime.now(dt.timezone.utc)
    if abs((current - when).total_seconds()) > 300 or amz_date[:8] != m["date"]:
        raise SigV4Error("InvalidSignatureException", "Signature expired or dated wrongly.")
    signed = m["signed"].split(";")
    if "host" not in signed:
        raise SigV4Error("InvalidSignatureException", "The host header must be signed.")
    missing = [h for h in signed if h not in headers]
    if missing:
        raise SigV4Error("InvalidSignatureException", f"Signed headers missing: {missing}")
    pairs = sorted(tuple(p.partition("=")[::2]) for p in query.split("&") if p)
    canonical = "\n".join(
        [
            method.upper(),
            quote(raw_path, safe="/~"),
            "&".join(f"{k}={v}" for k, v in pairs),
            "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed),
            ";".join(signed),
            headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{m['date']}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{creds.secret_key}".encode(), m["date"])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m["sig"]):
        raise SigV4Error(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    if hashlib.sha256(body).hexdigest() != (
        headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    ):
        raise SigV4Error("InvalidSignatureException", "x-amz-content-sha256 does not match body")
    return akid
