"""The dashboard in a real headless Chromium (Debian's) while a simulated site runs.

Driven with Playwright's Python package against /usr/bin/chromium (never a downloaded browser). A
screenshot is saved as test-artifacts/dashboard.png.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from csms.web import dashboard_url
from simulators.site import Constant

from .site import METER, OPERATOR_TOKEN, TOKEN, running_site, wait_until

async_api = pytest.importorskip("playwright.async_api", reason="the playwright package is a test extra: pip install -e '.[test]'")

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
GROUP = 'section.group[data-group="garage"]'


async def wait_js(page, expression: str, arg: Any = None, timeout: float = 5.0) -> None:
    """Polls ``expression`` until it is truthy. (Playwright's wait_for_function evaluates strings with eval,
    which the dashboard's Content-Security-Policy rightly forbids; page.evaluate is not affected.)"""
    try:
        async with asyncio.timeout(timeout):
            while not await page.evaluate(expression, arg):
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {expression}") from None


@pytest.fixture
async def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (scripts/install-test-deps.sh installs it: apt-get install chromium)")
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS, timeout=30_000)
        try:
            yield browser
        finally:
            await browser.close()


async def test_dashboard_shows_live_chart_table_meter_and_events(tmp_path, browser):
    async with running_site(tmp_path) as rig:
        app = rig.app
        await rig.charging_at_full("CP1")
        page = await browser.new_page(viewport={"width": 1280, "height": 1100})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)

        await page.goto(dashboard_url("127.0.0.1", app.http_port, TOKEN))
        await wait_js(page, "() => window.csmsDashboard && window.csmsDashboard.updates >= 2", timeout=10)
        assert "token" not in page.url, "the login link must leave no token in the address bar"
        assert await page.evaluate("localStorage.getItem('csms-token')") == TOKEN

        # The charger table shows the balancer's limit, the draw, the control state and the reason.
        row = page.locator(f'{GROUP} tr[data-charger="CP1"]')
        await wait_js(page, f"""() => document.querySelector('{GROUP} tr[data-charger="CP1"] td.draw-l1')
                                ?.textContent === '16.0'""")
        assert await row.locator("td.limit").inner_text() == "16.0"
        assert await row.locator("td.in-force").inner_text() == "16.0"
        assert await row.locator(".state").inner_text() == "controlled"
        assert await row.locator("td.reason").inner_text() == app.balancer.decision("garage").limits["CP1"].reason
        assert (await page.locator(f'{GROUP} tr[data-charger="CP2"] td.connection').inner_text()).startswith("online")

        # Meter health and the event timeline.
        meter_text = await page.locator(f'{GROUP} .meter[data-meter="{METER}"]').inner_text()
        assert f"Meter {METER}" in meter_text and "online" in meter_text
        assert "profile" in await page.locator("#events").inner_text()

        # The chart: a canvas, per-phase series against the fuse line and the group maximum, fed live.
        box = await page.locator(f"{GROUP} .chart canvas").first.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150
        labels = await page.evaluate("csmsDashboard.charts.garage.series.slice(1).map(s => s.label)")
        assert labels == ["L1", "L2", "L3", "Fuse", "Group max"]
        last = "i => { const d = csmsDashboard.charts.garage.data; return d[i][d[i].length - 1]; }"
        assert await page.evaluate(last, 4) == 40 and await page.evaluate(last, 5) == 32
        mains_l1 = app.last_readings[METER].current[0]
        assert await page.evaluate(last, 1) == pytest.approx(mains_l1, abs=2.5)

        rig.sim.sites[METER].loads.append(Constant((7.0, 0.0, 0.0)))  # a kettle on L1
        await wait_until(lambda: (app.last_readings[METER].current[0] or 0) > mains_l1 + 5, what="the mains seeing it")
        await wait_js(page, "a => csmsDashboard.charts.garage.data[1].at(-1) > a", mains_l1 + 5, timeout=4)
        readout = await page.locator(f'{GROUP} .readout [data-phase="1"]').inner_text()
        assert float(readout.split()[1]) > mains_l1 + 5
        points_before = await page.evaluate("csmsDashboard.charts.garage.data[0].length")
        await asyncio.sleep(3.0)
        assert await page.evaluate("csmsDashboard.charts.garage.data[0].length") >= points_before + 2, \
            "the chart must get a new point at least every 1.5 s (it polls every second)"

        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        assert problems == []


async def test_dashboard_asks_for_the_token_once_and_refuses_a_wrong_one(tmp_path, browser):
    async with running_site(tmp_path) as rig:
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{rig.app.http_port}/")
        assert await page.locator("#login").is_visible()
        await page.fill("#token", "not-the-token-at-all")
        await page.click("#login-form button")
        await page.wait_for_selector("#login-error:not([hidden])", timeout=5_000)
        assert "refused" in await page.locator("#login-error").inner_text()
        await page.fill("#token", TOKEN)
        await page.click("#login-form button")
        await wait_js(page, "() => window.csmsDashboard.updates >= 1")
        assert await page.locator("#login").is_hidden()
        await page.reload()  # remembered: no second question
        await wait_js(page, "() => window.csmsDashboard.updates >= 1")
        assert await page.locator("#login").is_hidden()
        assert await page.locator(f'{GROUP} tr[data-charger="CP1"]').count() == 1


async def test_dashboard_shows_a_sub_board_against_its_fuse(tmp_path, browser):
    """A sub-board (circuit) with no meter of its own: its row shows its fuse, the current its chargers draw on
    each phase, and the balancer's plan; a car on it is held to the sub-board's fuse, not the group's."""
    carport = [{"id": "carport", "name": "Carport", "max_current": 10, "chargers": ["CP1"]}]
    async with running_site(tmp_path, circuits=carport) as rig:
        app = rig.app
        rig.plug_in("CP1")
        await wait_until(lambda: app.delivery.channels["CP1"].in_force is not None
                         and rig.charger_draw("CP1") > 5, what="CP1 charging on the carport")
        limit = app.balancer.decision("garage").limits["CP1"].limit
        assert 6 <= limit <= 10  # the carport's 10 A fuse less its margin, not the group's 32 A
        page = await browser.new_page(viewport={"width": 1280, "height": 1100})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        await page.goto(dashboard_url("127.0.0.1", app.http_port, TOKEN))
        row = f'{GROUP} table.circuits tr[data-circuit="carport"]'
        await wait_js(page, f"() => document.querySelector('{row}') !== null", timeout=10)
        assert await page.locator(f"{GROUP} table.circuits").is_visible()
        cells = await page.locator(f"{row} td").all_inner_texts()
        assert cells[0] == "carport (Carport)" and cells[1] == "main fuse" and cells[2] == "10.0"
        await wait_js(page, f"() => parseFloat(document.querySelectorAll('{row} td.load')[0].textContent) > 5")
        assert all(float(c) <= 10 for c in cells[3:6] if c), cells
        assert "over" not in (await page.locator(f"{row} td.load").first.get_attribute("class"))
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-circuits.png"), full_page=True)
        assert problems == []


async def test_dashboard_commissioning_section_shows_the_latest_report_and_starts_a_check(tmp_path, browser):
    """Per metered group: the latest stored report (each finding with its evidence and fix, each untested
    charger with why), the passive watch's findings, and "Check wiring", which asks, then posts to the API with
    the operator token; the check it starts then shows as the latest report."""
    from csms.commissioning.model import Finding, SiteWiring
    from csms.commissioning.passive import PassiveFinding
    from csms.storage import commissioning as stored

    async with running_site(tmp_path) as rig:
        app = rig.app
        now = app.clock()
        finding = Finding("reversed_clamp", f"{METER} L2", "the clamp on meter phase L2 is the wrong way round",
                          ("CP1 released: meter L2 -10.0 A",), "turn the clamp on L2 round")
        rotation = Finding("phase_rotation", "CP2", "CP2 is wired T??, not STR as configured",
                           ("CP2 released: meter L3 +10.0 A",), 'set chargers.1.phase_rotation = "TRS"',
                           {"chargers.1.phase_rotation": "TRS"})
        report_id = await app.storage.write(stored.start_report("garage", now - 60, "test"))
        await app.storage.write(stored.finish_report(report_id, now - 20, "done", {
            "group": "garage", "ok": False, "findings": [finding.as_json(), rotation.as_json()],
            "chargers": [{"id": "CP1", "tested": True, "reason": ""},
                         {"id": "CP2", "tested": False, "reason": "no car plugged in and charging"}]}))
        # What the passive watch raised (as its correlator would, from normal charging).
        wiring = SiteWiring("garage", 0, METER, True, ())
        app.wiring_watch._update("garage", wiring, [PassiveFinding(finding, 4)])

        page = await browser.new_page(viewport={"width": 1280, "height": 1400})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
        await page.goto(dashboard_url("127.0.0.1", app.http_port, TOKEN))
        box = f"{GROUP} .commissioning"
        await wait_js(page, f"() => document.querySelectorAll('{box} .commission-report .finding').length === 2",
                      timeout=10)
        report = await page.locator(f"{box} .commission-report").inner_text()
        assert f"Check #{report_id}" in report and "done" in report
        assert "[reversed_clamp]" in report and "CP1 released: meter L2 -10.0 A" in report
        assert "Fix: turn the clamp on L2 round" in report
        assert 'config: chargers.1.phase_rotation = "TRS"' in report
        assert "CP2 not tested: no car plugged in and charging" in report
        passive = await page.locator(f"{box} .passive-findings").inner_text()
        assert "[reversed_clamp]" in passive and "4 events" in passive and "turn the clamp on L2 round" in passive

        # The button: asks first, then posts with the operator token typed once.
        questions: list[str] = []

        async def answer(dialog) -> None:
            questions.append(dialog.message)
            await dialog.accept()

        page.on("dialog", answer)
        posts: list[tuple[str, str | None]] = []
        page.on("request", lambda r: posts.append((r.url, r.headers.get("authorization")))
                if r.method == "POST" else None)
        await page.fill(f"{box} .operator-token", OPERATOR_TOKEN)
        await page.click(f"{box} .check-wiring")
        await wait_js(page, f"() => /check #\\d+ started/.test(document.querySelector('{box} .commission-message')"
                            ".textContent)", timeout=10)
        assert questions and "Check the wiring of group garage" in questions[0]
        assert posts == [(f"{rig.base}/api/groups/garage/commission", f"Bearer {OPERATOR_TOKEN}")]
        assert await page.evaluate("sessionStorage.getItem('csms-operator-token')") == OPERATOR_TOKEN
        # No car is charging, so the check it started ends at once with both chargers untested, and shows.
        await wait_js(page, f"""() => /Check #{report_id + 1} · done/.test(
                                document.querySelector('{box} .commission-report').textContent)""", timeout=15)
        latest = await page.locator(f"{box} .commission-report").inner_text()
        assert "CP1 not tested: no car plugged in" in latest and "CP2 not tested" in latest
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-commissioning.png"), full_page=True)
        assert problems == []
