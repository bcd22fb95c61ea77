"""The status page (`GET /` on the admin listener) in a real browser: Debian's Chromium, headless,
driven by Playwright (its Python package drives the system browser: nothing is downloaded). The
page loads, shows the routes with live request counts, shows a target going unhealthy and coming
back, and asks for the token when the admin API has one. Screenshots are saved as test artifacts
in build/test-artifacts/ (FASTGW_TEST_ARTIFACTS overrides)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import http_get
from tests.support.procs import REPO, Backend, Gateway, start_backend

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FASTGW_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TOKEN = "status-page-test-token-0123456789"


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[Backend, Backend]]:
    with start_backend("page-a") as a, start_backend("page-b") as b:
        yield a, b


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def control(backend: Backend, what: str, value: str) -> None:
    assert http_get(backend.port, f"/control/{what}/{value}").status == 200


def doc(a: Backend, b: Backend, **extra: Any) -> dict[str, Any]:
    return {
        "workers": 2,
        "grace_period": "5s",
        "upstreams": {
            "app": {
                "targets": [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
                "health": {"path": "/healthz", "interval": "200ms", "timeout": "200ms", "unhealthy_after": 1,
                           "healthy_after": 1, "jitter": "20ms"},
            },
        },
        "rate_limits": {"per_ip": {"rate": "1000/s", "burst": 1000, "key": "ip"}},
        "routes": [
            {"match": {"prefix": "/app"}, "upstream": "app"},
            {"match": {"prefix": "/api"}, "upstream": "app", "strip_prefix": True, "rate_limit": "per_ip"},
        ],
        "access_log": {"path": False},
        **extra,
    }


def test_status_page_shows_routes_and_target_health(
    backends: tuple[Backend, Backend], browser: Any, tmp_path: Path
) -> None:
    a, b = backends
    control(a, "health", "200")
    control(b, "health", "200")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Gateway(doc(a, b), tmp_path) as g:
        for _ in range(12):
            assert http_get(g.port, "/app").status == 200
        for _ in range(3):
            assert http_get(g.port, "/api/app").status == 200
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        resp = page.goto(f"http://127.0.0.1:{g.admin_port}/?refresh=150")
        assert resp is not None and resp.status == 200
        assert resp.headers["content-type"].startswith("text/html")
        page.wait_for_selector("body[data-loaded=true]", timeout=10_000)
        # The routes, with what they served.
        app_row = page.locator('#routes tr[data-route="/app/*"]')
        api_row = page.locator('#routes tr[data-route="/api/*"]')
        assert app_row.locator("td").nth(2).inner_text() == "app"
        assert api_row.locator("td").nth(3).inner_text() == "per_ip"
        page.wait_for_function(
            """() => document.querySelector('#routes tr[data-route="/app/*"] td:last-child').textContent === '12'""",
            timeout=10_000,
        )
        # Rate-limit counters are published by the workers every 0.5 s.
        cell = '#ratelimits tr[data-limit="per_ip"] td:nth-child(7)'
        page.wait_for_function(f"() => document.querySelector('{cell}').textContent === '3'", timeout=10_000)
        workers = page.locator("#workers tbody tr")
        assert workers.count() == 2 and all(p in page.inner_text("#workers") for p in map(str, g.workers))
        target_b = f'#targets tr[data-target="app/127.0.0.1:{b.port}"]'
        page.wait_for_selector(f'{target_b}[data-health="healthy"]', timeout=10_000)
        mean = page.locator('#routes tr[data-route="/app/*"] td').nth(6).inner_text()
        assert mean.endswith(("µs", "ms")), mean
        page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)

        control(b, "health", "503")
        page.wait_for_selector(f'{target_b}[data-health="unhealthy"]', timeout=10_000)
        assert page.locator(f"{target_b} td.health").inner_text() == "unhealthy"
        assert "bad" in (page.locator(f"{target_b} td.health").get_attribute("class") or "")
        assert page.locator(f'#targets tr[data-target="app/127.0.0.1:{a.port}"]').get_attribute("data-health") == (
            "healthy")
        page.screenshot(path=str(ARTIFACTS / "status-page-unhealthy.png"), full_page=True)

        control(b, "health", "200")
        page.wait_for_selector(f'{target_b}[data-health="healthy"]', timeout=10_000)
        assert errors == []
        page.close()
    assert (ARTIFACTS / "status-page.png").stat().st_size > 10_000


def test_status_page_asks_for_the_admin_token(backends: tuple[Backend, Backend], browser: Any, tmp_path: Path) -> None:
    a, b = backends
    control(a, "health", "200")
    control(b, "health", "200")
    gw = doc(a, b, workers=1)
    with Gateway(gw | {"admin": {"address": f"127.0.0.1:{_port()}", "token": TOKEN}}, tmp_path) as g:
        assert http_get(g.admin_port, "/stats").status == 401  # the data needs the token...
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{g.admin_port}/?refresh=150")  # ...the page itself does not
        page.wait_for_selector("#auth-form", state="visible", timeout=10_000)
        assert "needs its bearer token" in page.inner_text("#error")
        page.fill("#token", TOKEN)
        page.click("#auth-form button")
        page.wait_for_selector("body[data-loaded=true]", timeout=10_000)
        assert page.locator('#routes tr[data-route="/app/*"]').count() == 1
        page.close()


def _port() -> int:
    from tests.support.procs import free_port

    return free_port()
