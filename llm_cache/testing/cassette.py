"""Cassettes: one pretty JSON file per test, the interactions it made, in order.

::

    {
      "format": "llm-cache-cassette/1",
      "test": "tests/test_app.py::test_summary",
      "interactions": [
        {
          "request": {"method": "POST", "url": "https://api.openai.com/v1/chat/completions",
                      "headers": {}, "body": {"model": "gpt-4o-mini", "messages": [...]}},
          "response": {"status": 200, "content_type": "application/json", "body": {...}}
        },
        {
          "request": {...},
          "response": {"status": 200, "content_type": "text/event-stream",
                       "events": [{"data": {...}}, {"data": "[DONE]"}]}
        }
      ]
    }

Written for people: sorted nowhere (the SDK's field order is kept), indented, non-ASCII as is,
so a re-recording shows in a pull request as the few lines that changed. Never holds a
credential: requests are recorded without them (``secrets``) and ``Cassette.save`` refuses a
file in which anything is shaped like a provider key.

A cassette and a cache entry are one exchange in two shapes: ``iter_entries_from_cassettes``
reads a folder of cassettes as ``(request, response)`` pairs for ``llm-cache import``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_cache.testing.payloads import body_bytes, stream_chunks, stream_framing
from llm_cache.testing.secrets import SecretFinding, find_secrets

__all__ = [
    "FORMAT",
    "Cassette",
    "CassetteError",
    "CassetteSecretError",
    "Interaction",
    "iter_entries_from_cassettes",
    "response_bytes",
]

FORMAT = "llm-cache-cassette/1"
_STREAM_FIELDS = ("events", "chunks", "chunks_base64")


class CassetteError(Exception):
    """A cassette that cannot be read or written (the message names the file)."""


class CassetteSecretError(CassetteError):
    """A cassette refused because something in it looks like a credential."""

    def __init__(self, path: Path, findings: list[SecretFinding], shown: str = "") -> None:
        self.path = path
        self.findings = findings
        lines = "\n".join(f"  {finding.describe()}" for finding in findings[:10])
        more = f"\n  … and {len(findings) - 10} more" if len(findings) > 10 else ""
        super().__init__(
            f"llm-cache refused to write the cassette {shown or path}: it would contain "
            f"{'a credential' if len(findings) == 1 else 'credentials'}:\n{lines}{more}\n"
            "Cassettes are committed to the repository, so no key may appear in one. Remove the "
            "key from the request (a prompt, a URL, a header the upstream echoes) and run the "
            "test again; nothing was written."
        )


@dataclass(slots=True)
class Interaction:
    """One request and its answer, in cassette form (see the module docstring)."""

    request: dict[str, Any]
    response: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"request": self.request, "response": self.response}


@dataclass(slots=True)
class Cassette:
    """The cassette file of one test; ``exists`` tells whether it was on disk when loaded."""

    path: Path
    interactions: list[Interaction] = field(default_factory=list)
    exists: bool = False

    @classmethod
    def load(cls, path: Path) -> Cassette:
        """The cassette at ``path``; an empty one (``exists`` false) when there is no file."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise CassetteError(f"cannot read the cassette {path}: {exc}") from None
        return cls(path, parse_interactions(path, text), exists=True)

    def document(self, test_id: str) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "test": test_id,
            "interactions": [i.to_json() for i in self.interactions],
        }

    def save(self, test_id: str, credentials: Iterable[str] = (), shown: str = "") -> None:
        """Write the file atomically, or raise ``CassetteSecretError`` and write nothing.

        ``credentials``: values the test sent as credentials, refused wherever they appear;
        ``shown``: the path as the user knows it, for the error message.
        """
        document = self.document(test_id)
        findings = find_secrets(document, credentials)
        if findings:
            raise CassetteSecretError(self.path, findings, shown)
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def parse_interactions(path: Path, text: str) -> list[Interaction]:
    """The interactions of a cassette file's text; ``CassetteError`` saying what is wrong."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CassetteError(f"the cassette {path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CassetteError(
            f'{path} is not an llm-cache cassette (expected an object with "format": "{FORMAT}")'
        )
    raw = document.get("interactions")
    if not isinstance(raw, list):
        raise CassetteError(f'the cassette {path} has no "interactions" list')
    interactions: list[Interaction] = []
    for index, item in enumerate(raw):
        request = item.get("request") if isinstance(item, dict) else None
        response = item.get("response") if isinstance(item, dict) else None
        if (
            not isinstance(request, dict)
            or not isinstance(response, dict)
            or not isinstance(request.get("method"), str)
            or not isinstance(request.get("url"), str)
            or not isinstance(response.get("status"), int)
        ):
            raise CassetteError(
                f"interaction #{index + 1} of the cassette {path} is malformed: it needs a "
                '"request" with "method" and "url" and a "response" with an integer "status"'
            )
        interactions.append(Interaction(request, response))
    return interactions


def response_bytes(response: dict[str, Any]) -> bytes:
    """The body bytes of a cassette answer; for a stream, its events in their wire framing."""
    if any(name in response for name in _STREAM_FIELDS):
        framing = stream_framing(str(response.get("content_type") or ""))
        return b"".join(stream_chunks(framing, response))
    return body_bytes(response)


def iter_entries_from_cassettes(
    folder: str | os.PathLike[str],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every cacheable exchange of the cassettes under ``folder``, as ``(request, response)``.

    Both in the ``llm-cache-entry/1`` export form, so ``Entry.from_export({"format":
    ENTRY_FORMAT, "request": request, "response": response})`` reads a pair (re-key it from
    the request). ``request``: ``{"method", "url", "headers", "body"}`` (the JSON body parsed;
    no credential in the URL or headers). ``response``: ``{"status", "content_type"}`` plus
    ``"body"`` (parsed JSON) or ``"events"`` (a stream: ``[{"t": 0.0, "data": <one frame in
    its wire form>}, ...]``; cassettes keep no timing). Only what a cache stores is yielded:
    2xx answers, JSON or a parsed stream, to requests with a JSON object body. ``folder`` may
    also be one cassette file. Files are read in sorted path order, interactions in file order;
    a file that is not a cassette raises ``CassetteError`` naming it.
    """
    root = Path(folder)
    if not root.exists():
        raise CassetteError(f"no such cassette folder: {root}")
    paths = [root] if root.is_file() else sorted(root.rglob("*.json"))
    for path in paths:
        for interaction in Cassette.load(path).interactions:
            request, response = interaction.request, interaction.response
            status = response["status"]
            if not 200 <= status < 300 or not isinstance(request.get("body"), dict):
                continue
            content_type = str(response.get("content_type") or "application/json")
            answer: dict[str, Any] = {"status": status, "content_type": content_type}
            if "body" in response:
                answer["body"] = response["body"]
            elif "events" in response:
                frames = stream_chunks(stream_framing(content_type), response)
                answer["events"] = [{"t": 0.0, "data": f.decode("utf-8")} for f in frames]
            else:
                continue
            yield (
                {
                    "method": request["method"],
                    "url": request["url"],
                    "headers": dict(request.get("headers") or {}),
                    "body": request["body"],
                },
                answer,
            )
