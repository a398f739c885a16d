"""The console in a real browser: headless Chromium (Debian's), driven by Playwright.

One walk through what an admin does: log in, chat in the playground and watch tokens stream,
see the dashboard draw its charts from that usage, revoke an API key. Then an admin with an
authenticator: refused without the code, let in with it, and a chat cancelled mid-stream.
Screenshots of each step go to test-artifacts/browser/ (the note shows them).
"""

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from django_otp.oath import totp
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import HELD_MAX_TOKENS
from tests.e2e.server import REPO_ROOT, ServedGatehouse

CHROMIUM = Path(os.environ.get("GATEHOUSE_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which a
# closed CI network refuses; root (as in CI containers) needs --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it (deploy/install-chromium.sh)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    yield opened
    context.close()


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _log_in(page: Page, gatehouse: ServedGatehouse) -> None:
    page.goto(f"{gatehouse.base_url}/admin/login/")
    page.fill("#id_username", gatehouse.admin_username)
    page.fill("#id_password", gatehouse.admin_password)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Gatehouse console")
    expect(page.locator(".console-nav")).to_contain_text("Dashboard")


def _rolled_up(gatehouse: ServedGatehouse) -> None:
    """Flush the usage records and roll them up, as beat would.

    Production buffers records in Redis, which this flush drains; the embedded server keeps
    them in its own memory and flushes them itself every few seconds, hence the wait.
    """
    script = (
        "from accounts.models import UsageRecord; "
        "from accounts.services.usage import usage_records_flush, usage_rollup; usage_records_flush(); "
        "n = UsageRecord.objects.count(); usage_rollup(period='day'); usage_rollup(period='hour'); print(n)"
    )
    for _ in range(30):
        if int(gatehouse.manage("shell", "-c", script).strip().splitlines()[-1]) > 0:
            return
        time.sleep(0.5)
    raise AssertionError("the chat's usage record never reached the database")


def test_an_admin_chats_sees_the_dashboard_and_revokes_a_key(page: Page, gatehouse: ServedGatehouse) -> None:
    _log_in(page, gatehouse)
    _shot(page, "1-console-home")

    # The playground: the session cookie authenticates the websocket; tokens stream in.
    page.goto(f"{gatehouse.base_url}/admin/playground/")
    expect(page.locator("#playground-status")).to_have_text("Ready", timeout=15_000)
    page.select_option("#playground-model", "demo-tiny")
    page.fill("#playground-max-tokens", "48")
    # Greedy: the demo model then never ends early, so the answer runs to its 48 tokens.
    page.fill("#playground-temperature", "0")
    page.click("#playground-send")
    expect(page.locator("#playground-status")).to_have_text("Done (length)", timeout=30_000)
    assert len(page.locator("#playground-output").inner_text()) > 0
    expect(page.locator("#playground-usage")).to_contain_text("48 completion")
    expect(page.locator("#playground-version")).to_contain_text("demo-tiny")
    _shot(page, "2-playground")

    # The dashboard draws that usage.
    _rolled_up(gatehouse)
    page.goto(f"{gatehouse.base_url}/admin/dashboard/")
    page.wait_for_function("window.gatehouseCharts && window.gatehouseCharts.requests")
    drawn = page.evaluate(
        "Object.fromEntries(Object.entries(window.gatehouseCharts).map(([name, chart]) => "
        "[name, chart.data.datasets.map(set => [set.label, set.data.reduce((a, b) => a + b, 0)])]))"
    )
    assert dict(drawn["requests"])["demo-tiny"] >= 1
    assert dict(drawn["tokens"])["demo-tiny"] >= 48
    # Each canvas was really painted: some pixel is not blank.
    painted = page.evaluate(
        "[...document.querySelectorAll('canvas[data-chart]')].map(c => "
        "c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v !== 0))"
    )
    assert painted == [True] * 8  # six charts of usage, two of spend
    expect(page.locator("#audit-chain")).to_contain_text("Head: event")
    _shot(page, "3-dashboard")

    # Revoke a key with the console's action; the key stops working at once.
    token = gatehouse.admin_token()
    created = httpx.post(
        f"{gatehouse.base_url}/api/keys/",
        json={"name": "browser-doomed", "scopes": ["models:read"]},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    key = created["key"]
    assert (
        httpx.get(f"{gatehouse.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )
    page.goto(f"{gatehouse.base_url}/admin/accounts/apikey/?q=browser-doomed")
    page.check("input.action-select")
    page.select_option("select[name=action]", "revoke")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("evoked")
    _shot(page, "4-key-revoked")
    after = httpx.get(f"{gatehouse.base_url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert after.status_code == 401, json.dumps(after.json())


def _enrolled_admin(gatehouse: ServedGatehouse, username: str, password: str) -> bytes:
    """A second admin with a TOTP authenticator; returns the authenticator's key."""
    gatehouse.manage(
        "shell", "-c",
        "from accounts.roles import Role; from accounts.services import user_create; "
        f"user_create(username={username!r}, password={password!r}, roles=[Role.ADMIN], is_staff=True, "
        "is_superuser=True)",
    )  # fmt: skip
    url = gatehouse.manage("twofactor_enroll", username).strip().splitlines()[-1]
    secret = parse_qs(urlparse(url).query)["secret"][0]
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def test_an_enrolled_admin_needs_the_code_and_cancels_a_chat(
    page: Page, gatehouse: ServedGatehouse, held_model: str
) -> None:
    password = "tess-has-a-long-password-7"
    key = _enrolled_admin(gatehouse, "tess", password)
    page.goto(f"{gatehouse.base_url}/admin/login/")
    page.fill("#id_username", "tess")
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    expect(page.locator(".errornote, .errorlist").first).to_contain_text("one-time code")
    _shot(page, "5-second-factor-asked")
    page.fill("#id_username", "tess")
    page.fill("#id_password", password)
    page.fill("#id_otp_token", f"{totp(key):06d}")
    page.click("input[type=submit]")
    expect(page.locator(".console-nav")).to_contain_text("Model access")

    # The held demo model stops after its first tokens until the cancel arrives, so the
    # cancel always lands mid-answer. The cancel frame follows the chat frame on the same
    # socket, so the server always sees the chat first.
    page.goto(f"{gatehouse.base_url}/admin/playground/")
    expect(page.locator("#playground-status")).to_have_text("Ready", timeout=15_000)
    page.select_option("#playground-model", held_model)
    page.fill("#playground-max-tokens", str(HELD_MAX_TOKENS))
    # Greedy: sampling can draw the end of text as the very first token, and an answer that
    # has already ended cannot be cancelled (it reads "Done (stop)").
    page.fill("#playground-temperature", "0")
    page.click("#playground-send")
    page.click("#playground-cancel")
    expect(page.locator("#playground-status")).to_have_text("Done (cancelled)", timeout=30_000)
    completion = int(page.locator("#playground-usage").inner_text().split(" completion")[0].split("+ ")[-1])
    assert completion < HELD_MAX_TOKENS
    _shot(page, "6-playground-cancelled")
