"""The dashboard (``trainforge ui``) against real local jobs on the process
backend: the JSON API, its guards (attacked), and the pages in a real
headless Chromium driven by Selenium. Screenshots of every page go to
``tests/artifacts/dashboard/`` (gitignored) for a person to look at."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trainforge
from trainforge.backends.local.backend import LocalBackend
from trainforge.backends.local.tuning import LocalTuning
from trainforge.config import load_settings
from trainforge.dashboard.api import DashboardAPI
from trainforge.dashboard.index import RunIndex
from trainforge.dashboard.server import make_server

from tests.infra.waiting import wait_until
from tests.integration.local_jobs import stop_leftovers

REPO = Path(__file__).resolve().parents[2]
CURVES = str(REPO / "tests" / "trainers" / "curves")
FAULTS = str(REPO / "tests" / "trainers" / "faults")
SHOTS = REPO / "tests" / "artifacts" / "dashboard"
# Trainer-controlled text that would run script if a page rendered it as HTML.
XSS_METRIC = '<img src=x onerror="window.__pwned=1">'
XSS_LINE = "<script>window.__pwned=2</script><img src=x onerror=\"window.__pwned=3\">"
XSS_HP = '"><svg onload="window.__pwned=4">'


class Env:
    def __init__(self, home: Path, url: str, api: DashboardAPI, token: str):
        self.home, self.url, self.api, self.token = home, url, api, token
        self.http = requests.Session()

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return self.http.post(self.url + path, headers=headers or {}, timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("dashboard") / "home"
    with pytest.MonkeyPatch.context() as mp:
        for variable in ("TRAINFORGE_BACKEND", "TRAINFORGE_CONFIG", "TRAINFORGE_S3_ENDPOINT_URL"):
            mp.delenv(variable, raising=False)
        mp.setenv("TRAINFORGE_HOME", str(home))
        jobs = [
            trainforge.submit_job(CURVES, hparams={"steps": 30, "delay": 0.01, "metric": XSS_METRIC, "line": XSS_LINE,
                                                   "note": XSS_HP}, name="curve-xss", labels={"team": "vision"}),
            trainforge.submit_job(CURVES, hparams={"steps": 12, "delay": 0.01, "lr": 0.3}, name="curve-fast",
                                  labels={"team": "nlp"}),
            trainforge.submit_job(FAULTS, hparams={"action": "failure", "message": "<b>boom</b>"}, name="broken"),
        ]
        for job in jobs:
            job.wait(timeout=120, raise_on_failure=False)
        settings = load_settings()
        api = DashboardAPI(LocalBackend("process", settings), LocalTuning("process", settings))
        server, dashboard = make_server(api, "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            yield Env(home, f"http://127.0.0.1:{server.server_address[1]}", api, dashboard.token)
        finally:
            dashboard.closing.set()
            server.shutdown()
            server.server_close()
            LocalTuning("process").list() and [LocalTuning("process").stop(t.name) for t in LocalTuning("process").list()
                                               if t.status and t.status.end_time is None]
            stop_leftovers()


# -- the JSON API ------------------------------------------------------------------
def test_runs_api_filters_sorts_and_loads_only_the_chosen_columns(env: Env) -> None:
    body = env.get("/api/runs?status=Completed&sort=-hp:lr&columns=hp:lr,metric:train:loss").json()
    assert body["total"] == 2 and [r["name"] for r in body["rows"]] == ["curve-fast", "curve-xss"]
    assert body["rows"][0]["cells"][0] == "0.3" and body["rows"][0]["cells"][1] < 0.2
    assert "hyperparameters" not in body["rows"][0]  # only what the table shows travels
    assert [r["name"] for r in env.get("/api/runs?label=team=vision").json()["rows"]] == ["curve-xss"]
    assert [r["name"] for r in env.get("/api/runs?status=Failed").json()["rows"]] == ["broken"]
    assert env.get("/api/runs?q=BOOM").json()["total"] == 1  # the failure reason is searchable
    bad = env.get("/api/runs?sort=nonsense")
    assert bad.status_code == 400 and bad.json()["error"].startswith("sort: unknown column")
    assert env.get("/api/runs/..%2f..%2fetc").status_code == 400  # names are checked before any path


def test_summary_index_reads_only_jobs_whose_status_changed(env: Env) -> None:
    index = env.api.index
    index.rows()
    calls: list[str] = []
    backend = index.backend
    original = backend.get
    backend.get = lambda name: (calls.append(name), original(name))[1]  # type: ignore[method-assign]

    def refresh(full: bool) -> list[str]:
        calls.clear()
        index._refreshed = float("-inf")
        if full:
            index._scanned = float("-inf")
            index._refresh()  # what the background refresh does when a full scan is due
        else:
            index.rows(wait=True)
        return sorted(calls)

    try:
        assert refresh(full=False) == []  # every job finished, no job added: nothing is read
        assert refresh(full=True) == []   # a full scan stats status files, reads none unchanged
        status = env.home / "jobs" / "curve-fast" / "status.json"
        os.utime(status, ns=(time.time_ns(), time.time_ns()))
        assert refresh(full=True) == ["curve-fast"]
        (env.home / "jobs" / "not-a-job").mkdir()  # the folder moves: a scan, and only jobs are read
        assert refresh(full=False) == [] and "not-a-job" not in [r["name"] for r in index.rows()]
        # A restarted server starts from <home>/dashboard/index.json: stats, no job read.
        calls.clear()
        restarted = RunIndex(backend)
        assert sorted(r["name"] for r in restarted.rows()) == sorted(r["name"] for r in index.rows())
        assert calls == [] and restarted.rows() == index.rows()
    finally:
        backend.get = original  # type: ignore[method-assign]
        (env.home / "jobs" / "not-a-job").rmdir()


def test_a_finished_job_leaves_its_curves_as_columns_for_the_first_view(env: Env) -> None:
    # Written by the job's supervisor (no page has asked for curve-fast's curves yet):
    # the whole metrics file, as float64 columns the first view maps instead of parsing.
    folder = env.home / "jobs" / "curve-fast"
    state = json.loads((folder / "metric-columns" / "state.json").read_text())["sources"]
    assert state["logged"]["offset"] == (folder / "run" / "output" / "metrics.jsonl").stat().st_size
    assert dict(zip(state["logged"]["names"], state["logged"]["rows"], strict=True)) == {"train:loss": 12,
                                                                                         "val:acc": 12}


def test_run_api_curves_are_downsampled_and_artifacts_download(env: Env) -> None:
    run = env.get("/api/runs/curve-fast").json()
    assert run["summary"]["phase"] == "Completed" and run["summary"]["billable_seconds"] >= 1
    assert run["summary"]["cost"] == 0.0 and run["spec"]["spec"]["hyperparameters"]["lr"] == "0.3"
    assert [c["type"] for c in run["status"]["conditions"]][-1] == "Completed"
    series = env.get("/api/runs/curve-fast/metrics?width=5").json()["series"]["train:loss"]
    assert series["points"] == 12 and len(series["x"]) == 5 and series["x"][0] == 1 and series["x"][-1] == 12
    model = env.get("/api/runs/curve-fast/artifacts/model")
    assert model.status_code == 200 and model.content[:2] == b"\x1f\x8b"  # model.tar.gz
    assert "attachment" in model.headers["Content-Disposition"]
    assert env.get("/api/runs/curve-fast/artifacts/..%2f..%2fsecret").status_code == 404
    compare = env.get("/api/compare?runs=curve-fast,curve-xss&width=50").json()
    assert set(compare["curves"]["train:loss"]) == {"curve-fast", "curve-xss"}
    lr = next(d for d in compare["differences"] if d["key"] == "lr")
    assert lr["values"] == ["0.3", None] and lr["differs"]


def _stream(env: Env, name: str) -> dict[str, list[str]]:
    events: dict[str, list[str]] = {}
    with env.http.get(env.url + f"/api/runs/{name}/events", stream=True, timeout=30) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        event = None
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                events.setdefault(event, []).append(line[6:])
                if event == "end":
                    break
    return events


def test_sse_streams_logs_status_and_metrics_then_ends(env: Env) -> None:
    events = _stream(env, "curve-fast")
    assert {"logs", "status", "metrics", "end"} <= set(events)
    assert "step=12 loss=" in "".join(events["logs"])
    # A second page on the run reads the same log reader, not the log again.
    reader = env.api._tails["curve-fast"]
    assert _stream(env, "curve-fast")["logs"] == events["logs"] and env.api._tails["curve-fast"] is reader


def test_static_files_and_pages_cannot_be_used_to_read_elsewhere(env: Env) -> None:
    page = env.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert env.get("/static/uplot/uPlot.iife.min.js").status_code == 200
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py", "/static//etc/passwd",
                 "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/passwd", "/static/runs.html/../../api.py", "/static/.",
                 "/../../etc/passwd", "/run/../../etc/passwd"):
        response = env.http.get(env.url + path, timeout=10, allow_redirects=False)
        assert response.status_code == 404, path
        assert b"root:" not in response.content and b"import" not in response.content
    # DNS rebinding: a page served under another name gets nothing.
    assert env.get("/api/runs", headers={"Host": "attacker.example:80"}).status_code == 421


def test_stop_needs_the_token_and_a_same_origin_request(env: Env) -> None:
    job = trainforge.submit_job(FAULTS, hparams={"action": "sleep", "seconds": "60"}, name="sleeper")
    wait_until(lambda: job.phase.value == "Training", timeout=60, what="sleeper training")
    refused = [env.post("/api/runs/sleeper/stop"),
               env.post("/api/runs/sleeper/stop", {"X-Trainforge-Token": "guess"}),
               env.post("/api/runs/sleeper/stop", {"X-Trainforge-Token": env.token, "Origin": "http://evil.example"}),
               env.post("/api/runs/sleeper/stop", {"X-Trainforge-Token": env.token, "Sec-Fetch-Site": "cross-site"})]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert job.phase.value == "Training"
    ok = env.post("/api/runs/sleeper/stop", {"X-Trainforge-Token": env.token, "Origin": env.url})
    assert ok.status_code == 200
    assert job.wait(timeout=60, raise_on_failure=False).phase.value == "Stopped"


# -- the pages, in a real browser ----------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
    if not (os.path.exists(chromium) and driver_path):
        message = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _ready(driver: Any, timeout: float = 20) -> None:
    wait_until(lambda: driver.execute_script("return document.body.dataset.ready"), timeout=timeout,
               what=f"{driver.current_url} painted", interval=0.05)


def _shot(driver: Any, name: str) -> None:
    """The whole page (the window grown to it, then back)."""
    height = min(4000, int(driver.execute_script("return document.documentElement.scrollHeight")))
    driver.set_window_size(1400, max(1000, height + 140))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def _no_script_ran(driver: Any) -> None:
    assert driver.execute_script("return window.__pwned") is None
    assert driver.execute_script("return document.querySelectorAll('main img, main svg, main script').length") == 0


def test_runs_page_loads_filters_and_renders_trainer_text_inert(env: Env, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(env.url + "/?columns=hp:note,hp:line,metric:" + XSS_METRIC.replace(" ", "%20"))
    _ready(browser)
    rows = lambda: [r.get_attribute("data-name") for r in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-name]")]
    assert set(rows()) >= {"curve-xss", "curve-fast", "broken"}
    assert XSS_LINE in browser.find_element(By.ID, "runs").text  # shown as text
    _no_script_ran(browser)
    _shot(browser, "runs")
    browser.find_element(By.CSS_SELECTOR, '#status-filter [data-phase="Failed"]').click()
    wait_until(lambda: rows() == ["broken"], timeout=10, what="only the failed run", interval=0.05)
    browser.find_element(By.CSS_SELECTOR, '#status-filter [data-phase="Failed"]').click()
    browser.find_element(By.ID, "q").send_keys("lr=0.3")
    wait_until(lambda: rows() == ["curve-fast"], timeout=10, what="text filter", interval=0.05)


def test_live_run_page_updates_curves_and_logs_then_stop_works(env: Env, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    job = trainforge.submit_job(CURVES, hparams={"steps": 400, "delay": 0.1, "metric": XSS_METRIC, "line": XSS_LINE},
                                name="curve-live")
    browser.get(env.url + "/run/curve-live")
    _ready(browser)
    points = lambda: int(browser.find_element(By.CSS_SELECTOR, '#charts .chart[data-metric="train:loss"]')
                         .get_attribute("data-points") or 0) if browser.find_elements(
                             By.CSS_SELECTOR, '#charts .chart[data-metric="train:loss"]') else 0
    lines = lambda: int(browser.find_element(By.ID, "logs").get_attribute("data-lines") or 0)
    first = wait_until(lambda: points() >= 3 and points(), timeout=30, what="a first curve", interval=0.1)
    seen_lines = wait_until(lambda: lines() >= 3 and lines(), timeout=30, what="first log lines", interval=0.1)
    wait_until(lambda: points() >= first + 5, timeout=30, what="the curve growing live", interval=0.1)
    wait_until(lambda: lines() > seen_lines + 5, timeout=30, what="logs growing live", interval=0.1)
    assert XSS_LINE in browser.find_element(By.ID, "logs").text
    assert XSS_METRIC in browser.find_element(By.ID, "charts").text
    _no_script_ran(browser)
    _shot(browser, "run-live")
    browser.find_element(By.ID, "stop").click()
    alert = browser.switch_to.alert
    assert "Stop run curve-live" in alert.text
    alert.accept()
    wait_until(lambda: browser.find_element(By.ID, "phase").text == "Stopped", timeout=60, what="Stopped shown",
               interval=0.1)
    assert job.status().phase.value == "Stopped"


def test_compare_overlays_two_runs(env: Env, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(env.url + "/compare?runs=curve-fast,curve-xss")
    _ready(browser)
    chart = browser.find_element(By.CSS_SELECTOR, '#charts .chart[data-metric="train:loss"]')
    assert chart.get_attribute("data-series") == "2"
    assert "curve-fast" in chart.text and "curve-xss" in chart.text  # the legend names both
    assert "lr" in browser.find_element(By.ID, "differences").text
    _no_script_ran(browser)
    _shot(browser, "compare")


def test_tuning_page_shows_trials_and_a_stopped_trial_as_stopped(env: Env, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    handle = trainforge.submit_tuning_job(
        CURVES, None, "local", {"lr": trainforge.Continuous(0.05, 0.5, "Log"), "steps": trainforge.Integer(20, 40)},
        "val:acc", hparams={"delay": 0.1}, metrics={"val:acc": r"val_acc=([0-9.]+)"},
        strategy="Random", seed=1, max_trials=5, max_parallel=2, name="tune-ui")
    first = wait_until(lambda: handle.trials(), timeout=60, what="a first trial")[0]
    wait_until(lambda: first.phase.value == "Training", timeout=60, what="trial 0 training")
    first.stop()
    handle.wait(timeout=120)
    browser.get(env.url + "/tuning/tune-ui")
    _ready(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#trials tr[data-trial]")
    assert len(rows) == 5
    stopped = browser.find_element(By.CSS_SELECTOR, '#trials tr[data-trial="0"]')
    assert "Stopped" in stopped.text and stopped.find_element(By.CSS_SELECTOR, ".objective").text == "stopped"
    assert "trial stopped or failed: no objective, not plotted" in browser.find_element(By.ID, "progress").text
    _shot(browser, "tuning")
    browser.get(env.url + "/tuning")
    _ready(browser)
    assert "tune-ui" in browser.find_element(By.ID, "tuning-jobs").text
