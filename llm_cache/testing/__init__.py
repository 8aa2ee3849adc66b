"""Record and replay of LLM calls for tests (the pytest plugin's machinery).

``llm_cache.pytest_plugin`` is the pytest front end; this package is what it is made of, one
job a module: ``cassette`` (the file format, ``iter_entries_from_cassettes`` for
``llm-cache import``), ``payloads`` (bodies and streams in readable form), ``secrets``
(credentials kept out), ``matching`` (the cache's key rules), ``player`` (one test's
record/replay state), ``intercept`` (httpx/httpx2 patching), ``diff`` and ``explain`` (why a
request has no recorded answer), ``modes``.
"""

from llm_cache.testing.cassette import (
    Cassette,
    CassetteError,
    CassetteSecretError,
    Interaction,
    iter_entries_from_cassettes,
)
from llm_cache.testing.modes import MODES

__all__ = [
    "MODES",
    "Cassette",
    "CassetteError",
    "CassetteSecretError",
    "Interaction",
    "iter_entries_from_cassettes",
]
