"""``/dashboard`` in a real browser: headless Chromium (Debian's package, driven by
Playwright's Python package) against the real proxy and the simulated upstream.

The page must load with no console error (its CSP forbids anything not served by the proxy),
show the figures of the requests made, and let a user open an entry and delete it by clicking.
A screenshot is saved to ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from llm_cache.config import Config
from llm_cache.observability.storage_info import peek_sync
from llm_cache.proxy.server import ProxyApp, create_app
from tests.conftest import Upstream
from tests.servers import run_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("LLM_CACHE_TEST_ARTIFACTS", ROOT / "test-artifacts"))
TOKEN = "dashboard-admin-token"
SECRET = "sk-test-secret-123"

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium, installed by ``ensure_chromium.sh`` when missing."""
    if not os.path.exists(CHROMIUM):
        script = Path(__file__).with_name("ensure_chromium.sh")
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        if result.returncode != 0 or not os.path.exists(CHROMIUM):
            message = f"chromium not installable here: {result.stderr.strip()[-400:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def dashboard_proxy(upstream: Upstream, tmp_path: Path) -> Iterator[tuple[str, ProxyApp]]:
    config = Config(
        env={},
        dotenv_path=None,
        backend="sqlite",
        sqlite_path=str(tmp_path / "cache.db"),
        openai_base_url=f"{upstream.url}/v1",
        anthropic_base_url=upstream.url,
        admin_token=TOKEN,
    )
    app = create_app(config)
    app.observability.timeline.interval = 0.2  # a timeline point every 0.2 s for the test
    with run_server(app) as url:
        yield url, app


def make_traffic(url: str) -> dict[str, Any]:
    """3 questions asked 3 times (3 misses, 6 hits), a Claude pair, one unpriced model."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=SECRET, max_retries=0)
    answers: dict[str, str] = {}
    keys: dict[str, str] = {}
    questions = ["What is the capital of France?", "Name a prime number", "Spell banana"]
    for _ in range(3):
        for q in questions:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": q}]
            )
            answers[q] = raw.parse().choices[0].message.content or ""
            keys[q] = raw.headers["x-cache-key"]
    claude = anthropic.Anthropic(base_url=url, api_key=SECRET, max_retries=0)
    for _ in range(2):
        claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=64,
            messages=[{"role": "user", "content": "Write a haiku about caches"}],
        )
    client.chat.completions.create(
        model="acme-private-model", messages=[{"role": "user", "content": "hello"}]
    )
    return {"answers": answers, "keys": keys, "questions": questions}


# Installing Chromium on first use (apt) can take over a minute of this test's set-up.
@pytest.mark.timeout(600)
def test_dashboard_in_a_real_browser(
    chromium: str, dashboard_proxy: tuple[str, ProxyApp], upstream: Upstream
) -> None:
    url, app = dashboard_proxy
    traffic = make_traffic(url)
    expected = httpx2.get(
        f"{url}/dashboard/api/summary", headers={"authorization": f"Bearer {TOKEN}"}
    ).json()
    assert expected["requests_by_status"] == {"hit": 7, "miss": 5}
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on(
                "request",
                lambda r: None if r.url.startswith((url, "data:")) else problems.append(r.url),
            )

            # The token form, then the page (the cookie carries the session).
            response = page.goto(f"{url}/dashboard")
            assert response is not None and response.status == 401
            page.fill("#token", "wrong")
            page.click("button[type=submit]")
            assert "Wrong token" in page.inner_text("body")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            expect(page.locator("#kpi-hit-rate")).to_have_text(re.compile(r"%$"))
            problems[:] = [p for p in problems if "401" not in p]  # the two form answers

            # Figures of the requests made: 7 hits of 12 lookups.
            assert page.inner_text("#kpi-hit-rate") == "58.3%"
            assert page.inner_text("#kpi-hit-sub") == "7 hits of 12 lookups"
            assert page.inner_text("#kpi-requests") == "12"
            tokens = expected["tokens_saved"]["input"] + expected["tokens_saved"]["output"]
            assert tokens > 0 and page.inner_text("#kpi-tokens") == f"{tokens:,}"
            assert page.inner_text("#kpi-cost").startswith("$")
            assert expected["cost_saved_usd"] > 0
            assert page.inner_text("#kpi-storage") == "5"
            hit_bar = page.locator("#statuses .bar-row[data-status=hit] .bar-value")
            assert hit_bar.inner_text() == "7"
            models = page.inner_text("#models")
            assert "gpt-4o-mini" in models and "claude-sonnet-4-6" in models
            assert "unpriced" in models  # acme-private-model has no list price
            assert "healthy" in page.inner_text("#health")
            # The hit-rate line appears once the sampler has taken points.
            page.wait_for_selector("#timeline path.rate", timeout=10_000)

            # Entries: listed, searched, opened, deleted.
            rows = page.locator("#entries tbody tr[data-key]")
            rows.first.wait_for()
            assert rows.count() == 5
            page.fill("#search", "prime")
            expect(rows).to_have_count(1)
            key = traffic["keys"]["Name a prime number"]
            row = page.locator(f"#entries tbody tr[data-key='{key}']")
            assert "Name a prime number" in row.inner_text()
            row.click()
            page.wait_for_selector("#drawer:not([hidden])")
            assert page.inner_text("#drawer-key") == key
            request_text = page.inner_text("#drawer-request")
            assert "Name a prime number" in request_text and "gpt-4o-mini" in request_text
            assert SECRET not in page.content()  # the stored request holds no credential
            answer = traffic["answers"]["Name a prime number"]
            assert answer and page.inner_text("#drawer-answer-text") == answer
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-entry.png"))

            page.click("#delete")
            assert page.inner_text("#delete") == "Confirm delete"
            page.click("#delete")
            page.wait_for_selector("#drawer", state="hidden")
            page.wait_for_selector("#toast:has-text('Entry deleted')")
            page.wait_for_selector(f"#entries tbody tr[data-key='{key}']", state="detached")
            assert peek_sync(app.storage, key) is None
            page.fill("#search", "")
            expect(rows).to_have_count(4)
            expect(page.locator("#kpi-storage")).to_have_text("4")
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    # The stats the page showed are the proxy's (and browsing counted no hit).
    stats = httpx2.get(f"{url}/cache/stats", headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert stats["size"] == 4
    assert sum(r["hits"] for r in stats["by_model"]) == 7


def test_dashboard_needs_the_token(dashboard_proxy: tuple[str, ProxyApp]) -> None:
    url, _ = dashboard_proxy
    page = httpx2.get(f"{url}/dashboard")
    assert page.status_code == 401 and "Admin token" in page.text
    assert "<script" not in page.text  # the form runs no script
    for path in ("/dashboard/api/summary", "/dashboard/api/entries", "/dashboard/api/entry?key=x"):
        assert httpx2.get(f"{url}{path}").status_code == 401
    assert httpx2.delete(f"{url}/dashboard/api/entry?key=x").status_code == 401
    login = httpx2.post(f"{url}/dashboard/login", data={"token": TOKEN})
    assert login.status_code == 303
    cookie = login.headers["set-cookie"]
    assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = cookie.split(";", 1)[0]
    ok = httpx2.get(f"{url}/dashboard/api/summary", headers={"cookie": session})
    assert ok.status_code == 200
    bad = httpx2.get(f"{url}/dashboard/api/summary", headers={"cookie": "llm_cache_admin=x"})
    assert bad.status_code == 401
    missing = httpx2.get(f"{url}/dashboard/api/entry?key={'0' * 64}", headers={"cookie": session})
    assert missing.status_code == 404
    # Static files are open (they hold no data) and come from the package.
    js = httpx2.get(f"{url}/dashboard/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert httpx2.get(f"{url}/dashboard/static/../../server.py").status_code == 404


def test_the_page_loads_nothing_from_outside() -> None:
    """Offline: no http(s) URL in what the page loads (the CSP enforces it in the browser)."""
    from importlib import resources

    static = resources.files("llm_cache.proxy.dashboard").joinpath("static")
    for name in ("index.html", "login.html", "app.js", "app.css"):
        text = static.joinpath(name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
        assert "@import" not in text and "url(" not in text
