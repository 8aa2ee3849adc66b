"""Make ``docs/dashboard.png``: the dashboard after a minute of realistic traffic.

Runs the real proxy (SQLite in a temporary directory) in front of the test suite's simulated
upstream, sends a mix of requests with the official SDKs -- several models, repeats (hits),
streams, an unpriced local model, a few upstream errors -- then photographs ``/dashboard`` in
headless Chromium (``tests/observability/ensure_chromium.sh`` installs it).

    .venv/bin/python docs/dashboard_screenshot.py [--seconds 60] [--out docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anthropic  # noqa: E402
import openai  # noqa: E402

from llm_cache.config import Config  # noqa: E402
from llm_cache.proxy.server import create_app  # noqa: E402
from tests.fake_upstream import create_fake_upstream  # noqa: E402
from tests.servers import run_server  # noqa: E402

TOPICS = [
    "Summarise this support ticket about a failed payment",
    "Translate 'good morning' into French",
    "Write a SQL query counting orders per customer",
    "Explain the difference between a list and a tuple",
    "Suggest a name for a coffee shop",
    "Classify the sentiment of: 'the update broke my app'",
    "Extract the invoice number from: INV-2291 due 12/01",
    "Give three test cases for a date parser",
    "What does HTTP 429 mean?",
    "Draft a polite reminder email",
    "Rewrite this sentence in plain English",
    "List the planets in order",
]
CHAT_MODELS = ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini", "gpt-4.1", "llama3-local"]
CLAUDE_MODELS = ["claude-sonnet-4-6", "claude-haiku-4-5"]


def one_request(url: str, rng: random.Random, pool: int) -> None:
    topic = TOPICS[min(int(rng.expovariate(0.45)), pool - 1)]
    latency = {"x-fake-latency-ms": str(rng.randint(250, 1400))}
    kind = rng.random()
    try:
        if kind < 0.6:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-demo", max_retries=0)
            model = rng.choice(CHAT_MODELS)
            if rng.random() < 0.06:
                latency["x-fake-status"] = "500"
            stream = rng.random() < 0.3
            response = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": topic}],
                stream=stream,
                extra_headers=latency,
            )
            if stream:
                for _ in response:  # type: ignore[union-attr]
                    pass
        elif kind < 0.9:
            claude = anthropic.Anthropic(base_url=url, api_key="sk-ant-demo", max_retries=0)
            claude.messages.create(
                model=rng.choice(CLAUDE_MODELS),
                max_tokens=300,
                messages=[{"role": "user", "content": topic}],
                extra_headers=latency,
            )
        else:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-demo", max_retries=0)
            client.embeddings.create(
                model="text-embedding-3-small", input=topic, extra_headers=latency
            )
    except (openai.APIError, anthropic.APIError):
        pass  # the injected upstream errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    fake = create_fake_upstream()
    with tempfile.TemporaryDirectory() as tmp, run_server(fake.app) as upstream:
        config = Config(
            env={},
            dotenv_path=None,
            sqlite_path=f"{tmp}/cache.db",
            openai_base_url=f"{upstream}/v1",
            anthropic_base_url=upstream,
        )
        app = create_app(config)
        app.observability.timeline.interval = args.seconds / 40
        with run_server(app) as url, ThreadPoolExecutor(12) as workers:
            stop = threading.Event()

            def traffic() -> None:
                rng = random.Random(7)
                started = time.monotonic()
                while not stop.is_set():
                    elapsed = time.monotonic() - started
                    pool = 2 + int(len(TOPICS) * min(1.0, elapsed / (args.seconds * 0.5)))
                    jobs = [
                        workers.submit(one_request, url, random.Random(rng.random()), pool)
                        for _ in range(rng.randint(4, 12))
                    ]
                    for job in jobs:
                        job.result()
                    time.sleep(args.seconds / 80)

            sender = threading.Thread(target=traffic, daemon=True)
            sender.start()
            time.sleep(args.seconds)  # the picture is taken while requests keep coming
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.goto(f"{url}/dashboard")
                page.wait_for_selector("#timeline path.rate")
                page.wait_for_selector("#entries tbody tr[data-key]")
                page.wait_for_timeout(500)
                page.screenshot(path=args.out, full_page=True)
                browser.close()
            stop.set()
            sender.join()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
