"""Dashboard benchmark; prints numbers, asserts nothing.

Generates local state in the on-disk format the local backend reads (a
benchmark fixture, written directly): 9,000 runs + a tuning job of 1,000
trials (10,000 runs), each with 5 metrics x 1,000 steps (one metrics file,
hard-linked into every job folder: the bytes each job holds are real, the
disk is spared), plus one run with 1,000,000 metric points. Then starts
``trainforge ui`` as a subprocess and measures

  - cold start: server start -> first runs page answered (the index built);
  - API p50/p99 per page (runs, run + curves, the 1M-point curve, compare,
    tuning job), against baselines in the same script: what the SDK does for
    the same view (``backend.list()``, ``Job.metrics()``, ``TuningJobAnalytics``);
  - time to first useful paint in headless Chromium (the page's
    ``data-ready`` marker, ms since navigation start);
  - server RSS.

    .venv/bin/python bench/dashboard.py [--runs 10000] [--steps 1000] [--big 1000000] [--trials 1000] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
METRICS = ("train:loss", "validation:loss", "validation:accuracy", "learning_rate", "grad_norm")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _status(phase: str, start: float, end: float, finals: dict[str, float], reason: str | None = None) -> str:
    conditions = [{"type": t, "status": "True", "reason": t, "message": m, "lastTransitionTime": _iso(at)}
                  for t, m, at in (("Staging", "downloading input channels", start),
                                   ("Training", "attempt 1 of 1", start + 1),
                                   (phase, reason or "training finished", end))]
    return json.dumps({"phase": phase, "message": reason or "training finished", "failureReason": reason,
                       "attempts": 1, "conditions": conditions, "finalMetrics": finals,
                       "artifacts": {}, "startTime": _iso(start), "endTime": _iso(end),
                       "billableSeconds": int(end - start)})


def _job(name: str, hps: dict[str, str], labels: dict[str, str]) -> str:
    return json.dumps({"job": {"apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob",
                               "metadata": {"name": name, "namespace": "default", "labels": labels},
                               "spec": {"image": "/opt/trainers/resnet", "instance": {"type": "cpu-small", "count": 1},
                                        "hyperparameters": hps}},
                       "backend": {"kind": "process", "options": {}, "output": "local://trainforge-artifacts/"}})


def _write_job(jobs: Path, name: str, hps: dict[str, str], labels: dict[str, str], status: str,
               metrics_file: Path | None) -> None:
    folder = jobs / name
    (folder / "logs").mkdir(parents=True)
    (folder / "job.json").write_text(_job(name, hps, labels))
    (folder / "status.json").write_text(status)
    (folder / "logs" / "attempt-1.log").write_text("epoch 1 ...\n")
    if metrics_file is not None:
        try:
            os.link(metrics_file, folder / "metrics.jsonl")
        except OSError:
            shutil.copyfile(metrics_file, folder / "metrics.jsonl")


def generate(home: Path, runs: int, steps: int, big: int, trials: int) -> None:
    from trainforge.spec import parse_job, parse_tuning_job

    jobs = home / "jobs"
    jobs.mkdir(parents=True)
    rng = random.Random(0)
    shared = home / "curve.jsonl"
    t0 = time.time() - 86400
    with open(shared, "w") as fh:
        for step in range(1, steps + 1):
            fh.writelines(json.dumps({"timestamp": t0 + step, "name": metric,
                                     "value": 1.0 / (1 + step * (i + 1) / 100), "step": step}) + "\n" for i, metric in enumerate(METRICS))
    parse_job(json.loads(_job("check", {"lr": "0.1"}, {}))["job"])  # the fixture is a valid job
    phases = ["Completed"] * 8 + ["Failed", "Stopped"]
    plain = runs - trials
    for n in range(plain):
        start = t0 + n * 7
        hps = {"lr": f"{10 ** rng.uniform(-4, -1):.6f}", "batch_size": str(rng.choice([32, 64, 128, 256])),
               "optimizer": rng.choice(["adam", "sgd", "adamw"]), "dropout": f"{rng.uniform(0, 0.5):.3f}",
               "epochs": "20"}
        phase = phases[n % len(phases)]
        finals = {m: rng.random() for m in METRICS} if phase == "Completed" else {}
        _write_job(jobs, f"run-{n:05d}", hps, {"team": rng.choice(["vision", "nlp", "speech"]),
                                                "project": f"p{n % 20}"},
                   _status(phase, start, start + rng.uniform(60, 3600), finals,
                           None if phase == "Completed" else "the trainer exited with code 1"), shared)
    # One run with a very long curve.
    with open(home / "big.jsonl", "w") as fh:
        for step in range(1, big + 1):
            fh.write(f'{{"timestamp":{t0 + step * 0.01:.2f},"name":"train:loss","value":{1 / (1 + step / 1e4) + rng.random() * 0.02:.6f},"step":{step}}}\n')
    _write_job(jobs, "big-run", {"lr": "0.001"}, {}, _status("Completed", t0, t0 + 7200, {"train:loss": 0.5}),
               home / "big.jsonl")
    # A tuning job of ``trials`` trials; a tenth stopped early (no objective).
    tuning = parse_tuning_job({"metadata": {"name": "big-tune"}, "spec": {
        "trainingJobTemplate": {"image": "/opt/trainers/resnet", "metrics": [{"name": "validation:accuracy",
                                                                               "regex": "acc=([0-9.]+)"}]},
        "objective": {"metric": "validation:accuracy", "type": "Maximize"},
        "parameters": [{"name": "lr", "type": "Continuous", "min": 1e-4, "max": 0.1, "scale": "Log"},
                       {"name": "batch_size", "type": "Categorical", "values": ["32", "64", "128"]},
                       {"name": "layers", "type": "Integer", "min": 1, "max": 8}],
        "strategy": {"type": "Bayesian", "seed": 0}, "limits": {"maxTrials": trials, "maxParallelTrials": 8}}})
    tdir = home / "tuning" / "big-tune"
    tdir.mkdir(parents=True)
    (tdir / "tuning.json").write_text(json.dumps({"tuning": tuning.to_dict(), "backend": {"kind": "process",
                                                                                           "options": {}}}))
    best, stops = None, []
    for n in range(trials):
        start = t0 + n * 30
        hps = {"lr": f"{10 ** rng.uniform(-4, -1):.6f}", "batch_size": rng.choice(["32", "64", "128"]),
               "layers": str(rng.randint(1, 8))}
        if n % 10 == 3:
            stops.append(json.dumps({"trial": n, "reason": "early stopping (median rule): below the median"}))
            status = _status("Stopped", start, start + 60, {}, "stopped by the tuning job")
        else:
            acc = 0.9 + 0.08 * rng.random()
            best = max(best or (0, ""), (acc, n))
            status = _status("Completed", start, start + 300, {"validation:accuracy": acc})
        _write_job(jobs, f"big-tune-{n:03d}", hps, {"trainforge.dev/tuning-job": "big-tune",
                                                    "trainforge.dev/trial": str(n)}, status, shared)
    (tdir / "early-stops.jsonl").write_text("\n".join(stops) + "\n")
    assert best is not None
    (tdir / "status.json").write_text(json.dumps({
        "phase": "Completed", "message": f"all {trials} trials finished",
        "trials": {"completed": trials - len(stops), "stopped": len(stops)},
        "bestTrial": {"name": f"big-tune-{best[1]:03d}", "number": best[1], "objective": best[0]},
        "startTime": _iso(t0), "endTime": _iso(t0 + trials * 30)}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _times(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(what: str, times: list[float], baseline: str = "") -> None:
    print(f"| {what} | {_p(times, .5):.1f} ms | {_p(times, .99):.1f} ms | {baseline} |")


def browser_paint(url: str, paths: list[str], repeats: int) -> dict[str, list[float]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    out: dict[str, list[float]] = {}
    try:
        for path in paths:
            for _ in range(repeats):
                driver.get("about:blank")
                driver.get(url + path)
                deadline = time.monotonic() + 60
                ready = None
                while ready is None and time.monotonic() < deadline:
                    ready = driver.execute_script("return document.body && document.body.dataset.ready")
                    if ready is None:
                        time.sleep(0.01)
                out.setdefault(path, []).append(float(ready) if ready else float("nan"))
    finally:
        driver.quit()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--home", type=Path, default=None, help="reuse (or keep) the generated state here")
    args = parser.parse_args()
    temp = None
    home = args.home
    if home is None:
        temp = tempfile.mkdtemp(prefix="trainforge-dashboard-bench-")
        home = Path(temp) / "home"
    os.environ["TRAINFORGE_HOME"] = str(home)
    os.environ.pop("TRAINFORGE_CONFIG", None)
    try:
        if not (home / "jobs").exists():
            started = time.perf_counter()
            generate(home, args.runs, args.steps, args.big, args.trials)
            print(f"generated {args.runs:,} runs x {len(METRICS)} metrics x {args.steps:,} steps, "
                  f"a {args.big:,}-point run and a {args.trials:,}-trial tuning job in "
                  f"{time.perf_counter() - started:.1f} s ({home})")
        run(args, home)
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def run(args: argparse.Namespace, home: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "sdk"), os.environ.get("PYTHONPATH", "")])}
    shutil.rmtree(home / "dashboard", ignore_errors=True)  # no index kept from an earlier run
    http = requests.Session()

    def start() -> tuple[subprocess.Popen[bytes], float]:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", "from trainforge.cli import main; main()", "ui", "--port",
                                 str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while True:
            try:
                http.get(url + "/api/runs?limit=1", timeout=300).raise_for_status()
                return proc, time.perf_counter() - started
            except requests.ConnectionError:
                if proc.poll() is not None:
                    raise SystemExit(f"the server exited: {proc.stderr.read().decode()[-2000:]}") from None  # type: ignore[union-attr]
                time.sleep(0.05)

    # The columnar metrics cache: the supervisor builds it while a job trains
    # and at its end; this fixture wrote the jobs directly, so build the big
    # run's here (timed: the supervisor's cost, spread over the run) and leave
    # the others to the dashboard's first view of each.
    from trainforge.backends.local import metric_columns
    from trainforge.backends.local.jobdir import JobDir

    for stale in (home / "jobs").glob("*/" + metric_columns.FOLDER):
        shutil.rmtree(stale)
    started = time.perf_counter()
    metric_columns.update(JobDir(home / "jobs" / "big-run"))
    built = time.perf_counter() - started
    size = (home / "jobs" / "big-run" / "metrics.jsonl").stat().st_size
    print(f"columns of the {args.big:,}-point run built from its metrics file in {built:.2f} s "
          f"({size / 2**20:.0f} MiB of JSON lines -> {args.big * 24 / 2**20:.0f} MiB of float64 rows)")

    server, cold = start()
    rss = _rss_mib(server.pid)
    server.terminate()
    server.wait(timeout=30)
    http.close()
    http = requests.Session()
    server, warm = start()
    try:
        print(f"\nstart -> first runs page answered: {cold:.2f} s with no index (every job read through the "
              f"backend, RSS {rss:.0f} MiB); {warm:.2f} s restarted, from <home>/dashboard/index.json\n")
        # First views, before any API call warms the server's caches: what a
        # person opening each page of a just-restarted server waits.
        # The runs page first: it loads the shared assets (uPlot, common.js) into a cold browser.
        first_paths = ["/", "/run/big-run", "/run/run-00042", "/tuning/big-tune"]
        try:
            first_paint = browser_paint(url, first_paths, 1)
        except Exception as exc:  # noqa: BLE001 (a benchmark reports, it does not fail)
            print(f"browser: not measured ({type(exc).__name__}: {exc})\n")
        else:
            print("| first view after a restart, headless Chromium | first useful paint |")
            print("|---|---|")
            notes = {"/run/big-run": f" ({args.big:,} points, columns on disk)",
                     "/run/run-00042": " (its columns built on this view)"}
            for path in first_paths:
                print(f"| {path}{notes.get(path, '')} | {first_paint[path][0]:.0f} ms |")
            print()

        from trainforge.backends.local.backend import LocalBackend
        from trainforge.tuning_client import TuningJobAnalytics

        backend = LocalBackend("process")
        n = args.repeats
        get = lambda path: http.get(url + path, timeout=120).raise_for_status()
        columns = "columns=instance,billable_seconds,hp:lr,hp:batch_size,hp:optimizer,metric:validation:accuracy"
        print("| API call (as the page makes it) | p50 | p99 | baseline (the SDK for the same view) |")
        print("|---|---|---|---|")
        base = _times(lambda: backend.list(), 3)
        first = _times(lambda: get(f"/api/runs?sort=-start_time&limit=50&{columns}"), 1)
        _row(f"runs page: /api/runs?sort=-start_time&limit=50&{columns} (first, sorting every row: {first[0]:.0f} ms)",
             _times(lambda: get(f"/api/runs?sort=-start_time&limit=50&{columns}"), n),
             f"backend.list() of {args.runs + 1:,} runs: {statistics.median(base):.0f} ms")
        first = _times(lambda: get(f"/api/runs?status=Completed&label=team=nlp&q=adam&sort=-metric:validation:accuracy&limit=50&{columns}"), 1)
        _row(f"runs page, filtered + sorted by a metric: status=Completed&label=team=nlp&q=adam&sort=-metric:validation:accuracy (first: {first[0]:.0f} ms)",
             _times(lambda: get(f"/api/runs?status=Completed&label=team=nlp&q=adam&sort=-metric:validation:accuracy&limit=50&{columns}"), n))
        _row("runs page: /api/columns", _times(lambda: get("/api/columns"), n))
        _row("run page: /api/runs/run-00042", _times(lambda: get("/api/runs/run-00042"), n))
        first = _times(lambda: get("/api/runs/run-00042/metrics?width=900"), 1)
        _row(f"run page curves: 5 x {args.steps:,} points -> 900 (first: {first[0]:.0f} ms)",
             _times(lambda: get("/api/runs/run-00042/metrics?width=900"), n))
        first = _times(lambda: get("/api/runs/big-run/metrics?width=1300"), 1)
        points = http.get(url + "/api/runs/big-run/metrics?width=1300").json()["series"]["train:loss"]["points"]
        from trainforge import Job

        sdk = _times(lambda: Job("big-run", backend).metrics(), 1)
        _row(f"the {args.big:,}-point run's curve -> 1300 points (first at this width: {first[0]:.0f} ms; "
             f"{points:,} points charted)", _times(lambda: get("/api/runs/big-run/metrics?width=1300"), n),
             f"Job.metrics() DataFrame (records, capped at 500,000): {sdk[0]:.0f} ms")
        first = _times(lambda: get("/api/compare?runs=run-00001,run-00002&width=800"), 1)
        _row(f"compare 2 runs, 5 metrics (first: {first[0]:.0f} ms)",
             _times(lambda: get("/api/compare?runs=run-00001,run-00002&width=800"), n))
        analytics = _times(lambda: TuningJobAnalytics("big-tune", backend="process").dataframe(), 1)
        _row(f"tuning page: /api/tuning/big-tune ({args.trials:,} trials)", _times(lambda: get("/api/tuning/big-tune"), n),
             f"TuningJobAnalytics.dataframe(): {analytics[0]:.0f} ms")
        print(f"\nload average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"\nserver RSS after the API calls: {_rss_mib(server.pid):.0f} MiB")
        try:
            paint = browser_paint(url, ["/", "/run/big-run", "/tuning/big-tune", "/compare?runs=run-00001,run-00002"], 5)
        except Exception as exc:  # noqa: BLE001 (a benchmark reports, it does not fail)
            print(f"\nbrowser: not measured ({type(exc).__name__}: {exc})")
        else:
            print("\n| page in headless Chromium | first useful paint, median of 5 (min..max) |")
            print("|---|---|")
            for path, values in paint.items():
                print(f"| {path} | {statistics.median(values):.0f} ms ({min(values):.0f}..{max(values):.0f}) |")
        print(f"\nserver RSS at the end: {_rss_mib(server.pid):.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
