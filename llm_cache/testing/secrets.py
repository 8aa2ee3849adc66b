"""Keeping credentials out of cassettes: what a credential is, and a scan for key-shaped text.

Cassettes are committed to repositories and read in pull requests, so a leaked key there is a
leaked key for good. Two defences, both applied before anything is written:

1. What is recorded never holds a credential by construction: request headers are reduced to
   the few that change an answer (never ``authorization``, ``x-api-key`` and the rest of
   ``CREDENTIAL_HEADERS``), URLs lose their user info and credential query parameters.
2. ``find_secrets`` walks the whole cassette for text shaped like a provider API key (a key
   pasted into a prompt, an upstream echoing a header) or equal to a credential the test sent;
   a cassette with a finding is refused, with the JSON path of each finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from llm_cache.engine.exchange import CREDENTIAL_HEADERS
from llm_cache.providers.base import CREDENTIAL_QUERY

__all__ = [
    "CREDENTIAL_HEADERS",
    "CREDENTIAL_QUERY_PARAMS",
    "SecretFinding",
    "clean_url",
    "credential_values",
    "find_secrets",
    "is_credential_header",
]

#: Request headers that carry credentials (SPEC "More providers"): the engine's list, plus the
#: ``amz-sdk-*`` family; never recorded.
_CREDENTIAL_HEADER_PREFIXES = ("amz-sdk-",)

#: Query parameters that carry credentials; removed from recorded URLs: the engine's list
#: (``key`` is Gemini's) and the other usual spellings (OAuth tokens, Azure SAS signatures).
CREDENTIAL_QUERY_PARAMS = CREDENTIAL_QUERY | {"apikey", "access_token", "token", "sig", "signature"}

#: Shapes of provider API keys: (description, pattern). A leading letter, digit or dash rules a
#: match out, so words such as ``task-…`` or ids such as ``chatcmpl-…`` never match; and the
#: match must look random (``_looks_random``), so ``sk-like-a-dashed-phrase`` is no key either.
_KEY_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(r"(?<![A-Za-z0-9_\-])" + pattern))
    for name, pattern in (
        ("an Anthropic API key (sk-ant-…)", r"sk-ant-[A-Za-z0-9_\-]{16,}"),
        ("an OpenAI-style API key (sk-…)", r"sk-[A-Za-z0-9_\-]{20,}"),
        ("a Google API key (AIza…)", r"AIza[0-9A-Za-z_\-]{35}"),
        ("a Groq API key (gsk_…)", r"gsk_[A-Za-z0-9]{20,}"),
        ("an xAI API key (xai-…)", r"xai-[A-Za-z0-9]{20,}"),
        ("a Hugging Face token (hf_…)", r"hf_[A-Za-z0-9]{30,}"),
        ("a Replicate token (r8_…)", r"r8_[A-Za-z0-9]{20,}"),
        ("a Perplexity API key (pplx-…)", r"pplx-[A-Za-z0-9]{20,}"),
        ("an AWS access key id (AKIA…)", r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])"),
        ("a GitHub token (ghp_…)", r"gh[pousr]_[A-Za-z0-9]{30,}"),
        ("a bearer token", r"[Bb]earer [A-Za-z0-9._~+/\-]{20,}=*"),
    )
)

#: Credentials shorter than this are not searched for verbatim (too many false findings).
_MIN_CREDENTIAL_LENGTH = 12


@dataclass(frozen=True, slots=True)
class SecretFinding:
    """One credential-like value: where it is (a JSON path) and what it looks like."""

    path: str
    kind: str
    sample: str

    def describe(self) -> str:
        return f"{self.path}: {self.kind} ({self.sample})"


def is_credential_header(name: str) -> bool:
    lower = name.lower()
    return lower in CREDENTIAL_HEADERS or lower.startswith(_CREDENTIAL_HEADER_PREFIXES)


def clean_url(url: str) -> str:
    """``url`` without user info and without credential query parameters (order kept)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if k.lower() not in CREDENTIAL_QUERY_PARAMS]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def credential_values(headers: Iterable[tuple[str, str]], url: str) -> set[str]:
    """The secret parts of a request's credentials, to make sure none is ever written."""
    found: set[str] = set()
    for name, value in headers:
        if is_credential_header(name) and not name.lower().startswith(("x-amz-", "amz-sdk-")):
            token = value.split(" ", 1)[1] if value.lower().startswith("bearer ") else value
            if len(token) >= _MIN_CREDENTIAL_LENGTH:
                found.add(token)
    parts = urlsplit(url)
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        secret = userinfo.partition(":")[2]
        if len(secret) >= _MIN_CREDENTIAL_LENGTH:
            found.add(secret)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() in CREDENTIAL_QUERY_PARAMS and len(value) >= _MIN_CREDENTIAL_LENGTH:
            found.add(value)
    return found


def find_secrets(value: Any, known: Iterable[str] = (), root: str = "") -> list[SecretFinding]:
    """Every string in ``value`` (object keys included) shaped like a key or equal to ``known``."""
    known_values = sorted({k for k in known if len(k) >= _MIN_CREDENTIAL_LENGTH}, key=len)
    findings: list[SecretFinding] = []
    for path, text in _strings(value, root):
        for secret in known_values:
            if secret in text:
                findings.append(SecretFinding(path, "a credential this test sent", _mask(secret)))
                break
        else:
            for kind, pattern in _KEY_SHAPES:
                match = next((m for m in pattern.finditer(text) if _looks_random(m[0])), None)
                if match:
                    findings.append(SecretFinding(path, kind, _mask(match.group(0))))
                    break
    return findings


def _looks_random(token: str) -> bool:
    """A generated secret has digits and a long run without dashes; a dashed phrase has not."""
    body = token.split(" ", 1)[-1]
    return any(c.isdigit() for c in body) and any(
        len(part) >= 12 for part in re.split(r"[-_]", body)
    )


def _mask(secret: str) -> str:
    return f"{secret[:6]}… {len(secret)} characters"


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, str(key)
            yield from _strings(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
