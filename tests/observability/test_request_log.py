"""One log line per proxied request (method, path, status, X-Cache-Status, key prefix,
duration), never a credential or a query ``key``; ``json`` makes each line a JSON object."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx2
import openai
import pytest

from llm_cache.config import Config
from llm_cache.observability.request_log import JsonFormatter, logging_config
from tests.conftest import Proxy, Upstream

SECRET = "sk-test-secret-123"


def request_lines(caplog: pytest.LogCaptureFixture, expect: int = 1) -> list[logging.LogRecord]:
    """The request lines, once ``expect`` arrived (a line follows the answer's last byte)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [r for r in caplog.records if r.name == "llm_cache.requests"]
        if len(lines) >= expect or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def test_one_line_per_request_with_the_fields(
    proxy: Proxy, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_cache.requests")
    client = openai.OpenAI(base_url=proxy.openai_base, api_key=SECRET, max_retries=0)
    answers = [
        client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "log me"}]
        )
        for _ in range(2)
    ]
    lines = request_lines(caplog, expect=2)
    assert len(lines) == 2
    for record, answer in zip(lines, answers, strict=True):
        text = record.getMessage()
        key = answer.headers["x-cache-key"]
        status = answer.headers["x-cache-status"]
        assert text.startswith(f"POST /v1/chat/completions 200 {status} key={key[:12]} ")
        assert key not in text  # a prefix, not the whole key
        assert text.endswith("ms")
        assert record.levelno == logging.INFO
        assert record.cache_status == status  # type: ignore[attr-defined]
        assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert [r.cache_status for r in lines] == ["MISS", "HIT"]  # type: ignore[attr-defined]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_no_credential_and_no_query_key_in_the_line(
    proxy: Proxy, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = httpx2.get(
        f"{proxy.url}/v1/models?key=AIzaSECRETQUERYKEY&x=1",
        headers={"authorization": f"Bearer {SECRET}"},
    )
    assert response.status_code == 200  # forwarded uncached
    (line,) = request_lines(caplog)
    text = line.getMessage()
    assert text.startswith("GET /v1/models 200 - key=- ")
    formatted = JsonFormatter().format(line)
    # Every line the cache wrote (the HTTP client's own debug lines are quieted by ``serve``).
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("llm_cache")]
    for record_text in [*ours, formatted]:
        assert "AIzaSECRET" not in record_text
        assert SECRET not in record_text
        assert "key=AIza" not in record_text


def test_errors_are_logged_with_their_reason(
    proxy: Proxy, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_cache.requests")
    response = httpx2.post(
        f"{proxy.url}/v1/chat/completions",
        content=b"{not json",
        headers={"authorization": f"Bearer {SECRET}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    (line,) = request_lines(caplog)
    assert line.getMessage().startswith("POST /v1/chat/completions 400 ")
    assert "error=" in line.getMessage()


def test_json_format_makes_every_line_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    import logging.config

    config = Config(env={"LLM_CACHE_LOG_FORMAT": "json"}, dotenv_path=None)
    assert config.log_format == "json"
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(logging_config(config.log_level, config.log_format))
        logging.getLogger("llm_cache.requests").info(
            "POST /v1/x 200 HIT", extra={"method": "POST", "status": 200}
        )
        logging.getLogger("uvicorn.error").info("Started server process")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("llm_cache.proxy").exception("it failed")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    objects = [json.loads(line) for line in lines]  # each line parses on its own
    assert [o["logger"] for o in objects] == [
        "llm_cache.requests",
        "uvicorn.error",
        "llm_cache.proxy",
    ]
    assert objects[0]["method"] == "POST" and objects[0]["status"] == 200
    assert objects[0]["level"] == "info" and objects[0]["message"] == "POST /v1/x 200 HIT"
    assert "ValueError: boom" in objects[2]["exception"]


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LLM_CACHE_LOG_FORMAT"):
        Config(env={"LLM_CACHE_LOG_FORMAT": "xml"}, dotenv_path=None)


def test_a_gemini_query_key_never_reaches_the_line(
    start_proxy: Any, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_cache.requests")
    with start_proxy(gemini_base_url=upstream.url) as proxy:
        path = "/v1beta/models/gemini-2.0-flash:generateContent"
        httpx2.post(
            f"{proxy.url}{path}?key=AIzaSECRETGEMINIKEY",
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        )
        (line,) = request_lines(caplog)
    text = line.getMessage()
    assert text.startswith(f"POST {path} ")
    assert "AIzaSECRET" not in text and "AIzaSECRET" not in JsonFormatter().format(line)


def test_refused_requests_are_logged_and_counted(
    start_proxy: Any, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.observability.helpers import scrape, value

    caplog.set_level(logging.INFO, logger="llm_cache.requests")
    with start_proxy(max_body_bytes=1000) as proxy:
        crlf = httpx2.post(f"{proxy.url}/v1/chat%0d%0aX-Forged:%201/completions", json={})
        too_big = httpx2.post(
            f"{proxy.url}/v1/chat/completions",
            content=b"{" + b" " * 5000 + b"}",
            headers={"authorization": f"Bearer {SECRET}", "content-type": "application/json"},
        )
        nowhere = httpx2.get(f"{proxy.url}/nowhere")
        assert (crlf.status_code, too_big.status_code, nowhere.status_code) == (400, 413, 404)
        lines = [r.getMessage() for r in request_lines(caplog, expect=3)]
        m = scrape(proxy.url)
    assert len(lines) == 3
    forged, big, missing = lines
    assert "\n" not in forged and "\r" not in forged  # no forged second line
    assert forged.startswith("POST /v1/chat\\x0d\\x0aX-Forged: 1/completions 400 - key=- ")
    assert big.startswith("POST /v1/chat/completions 413 - key=- ") and "error=" in big
    assert missing.startswith("GET /nowhere 404 - key=- ")
    assert value(m, "llm_cache_requests_total", status="error") == 3
    assert value(m, "llm_cache_requests_total", status="error", provider="openai") == 1  # 413
