"""Attacks with metric regexes and metric files: a submitter's pattern and a
trainer's output must not stall whoever applies them (the local supervisor,
the controller) nor make a reader hold a huge file.

The patterns below are catastrophic for a backtracking engine (Python's ``re``
needs longer than the age of the universe on the inputs used here, holding the
GIL all the while); with RE2 they are linear. A hang is guarded by a generous
join timeout, never by measuring how fast anything was."""

from __future__ import annotations

import json
import threading
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trainforge
from click.testing import CliRunner
from trainforge.cli import main
from trainforge.errors import SpecError
from trainforge.metrics import (
    MAX_LINE_CHARS,
    MetricParser,
    MetricRecord,
    parse_records,
    read_records,
    read_stored_records,
)
from trainforge.spec import Phase, parse_job
from trainforge.spec.models import MetricDefinition
from trainforge.staging import ArtifactURIs
from trainforge.storage import open_store

from tests.infra.waiting import wait_until
from tests.integration.local_jobs import stop_leftovers

T = TypeVar("T")
MiB = 1024 * 1024
HANG_GUARD = 300  # seconds: only a stalled engine gets anywhere near this

# (pattern, a line that makes a backtracking engine explode on it)
PATHOLOGICAL = [
    (r"(x+x+)+y", "x" * 64),
    (r"^(a+)+$", "a" * 64 + "!"),
    (r"((?:a|aa)+)b", "a" * 64),
    (r"(\d+\s?)+=", "1 " * 64),
]


def finishes(fn: Callable[[], T]) -> T:
    """``fn()``'s result; fails (instead of hanging the suite) if it stalls."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), "stalled: matching is not linear"
    if "error" in box:
        raise box["error"]
    return box["result"]


def spec(metrics: list[dict[str, str]]) -> dict[str, Any]:
    return {"apiVersion": "trainforge.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "j"},
            "spec": {"image": "img", "metrics": metrics}}


# -- at submit -----------------------------------------------------------------------------
@pytest.mark.parametrize(("regex", "why"), [
    (r"loss=([0-9.]+)(?=\s)", "invalid perl operator: (?="),
    (r"(?<!val_)loss=([0-9.]+)", "invalid perl operator: (?<!"),
    (r"(a+)\1", "invalid escape sequence: \\1"),
    (r"((a{100}){100}){100}", "invalid repetition size"),
])
def test_patterns_re2_cannot_run_are_refused_at_submit(regex: str, why: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_job(spec([{"name": "ok", "regex": "(x)"}, {"name": "bad", "regex": regex}]))
    [issue] = caught.value.issues
    assert issue.path == "spec.metrics[1].regex"
    assert why in issue.message and "RE2 cannot compile it" in issue.message


def test_the_cli_refuses_them_in_one_clear_line_with_exit_2(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec([{"name": "bad", "regex": r"(a)\1"}])))
    result = CliRunner().invoke(main, ["submit", str(path)])
    assert result.exit_code == 2
    assert "spec.metrics[0].regex" in result.output and "RE2 cannot compile it" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("regex", "line"), PATHOLOGICAL)
def test_backtracking_bombs_are_accepted_and_run_linearly(regex: str, line: str) -> None:
    """RE2 can run them, so they are not refused; they just cannot explode."""
    job = parse_job(spec([{"name": "m", "regex": regex}]))
    parser = MetricParser(job.spec.metrics)
    assert finishes(lambda: parser.feed(line * 4, 0.0)) == []


# -- the parser on hostile lines ------------------------------------------------------------
@pytest.mark.parametrize(("regex", "line"), PATHOLOGICAL)
def test_a_10_mb_adversarial_line(regex: str, line: str) -> None:
    parser = MetricParser([{"name": "m", "regex": regex}, {"name": "loss", "regex": r"loss=([0-9.]+)"}])
    huge = line * (10 * MiB // len(line))
    assert finishes(lambda: parser.feed(huge, 0.0)) == []
    # a progress bar: pieces between carriage returns are lines of their own, each bounded
    bar = "\r".join([line * 100] * 1000 + ["loss=0.25"])
    assert [(r.name, r.value) for r in finishes(lambda: parser.feed(bar, 1.0))] == [("loss", 0.25)]


def test_only_the_first_64_ki_characters_of_a_line_are_searched() -> None:
    parser = MetricParser([{"name": "loss", "regex": r"loss=([0-9.]+)"}])
    assert parser.feed("loss=1.5 " + "x" * MAX_LINE_CHARS, 0.0)[0].value == 1.5
    assert parser.feed("x" * MAX_LINE_CHARS + " loss=2.5", 0.0) == []


# -- the controller's fold --------------------------------------------------------------------
def test_controller_fold_of_an_adversarial_log_returns_bounded() -> None:
    from trainforge_controller.archive import FOLD_MAX_LINES, fold

    definitions = [MetricDefinition(name=f"m{i}", regex=regex) for i, (regex, _) in enumerate(PATHOLOGICAL)]
    definitions.append(MetricDefinition(name="loss", regex=r"loss=([0-9.]+)"))
    bombs = "\n".join(line * (MAX_LINE_CHARS // len(line) + 1) for _, line in PATHOLOGICAL)
    text = "\n".join([bombs] * 40 + ["epoch 1 loss=0.5", "epoch 2 loss=0.25"])  # ~10 MB
    merged = finishes(lambda: fold(definitions, text, [], 9.0))
    assert [(r.name, r.value) for r in merged] == [("loss", 0.5), ("loss", 0.25)]

    many = "\n".join(f"loss={i}" for i in range(FOLD_MAX_LINES + 10))
    folded = fold(definitions, many, [], 9.0, max_records=1000)
    assert len(folded) == 1000 and folded[-1].value == FOLD_MAX_LINES + 9  # the last ones kept
    assert fold(definitions, many, [], 9.0)[0].value == 10  # only the last FOLD_MAX_LINES lines


class GatedStore:
    """The real local store; reading the log waits for ``gate``: a fold as slow
    as the test wants, without a clock."""

    def __init__(self, store: Any, gate: threading.Event):
        self.store, self.gate = store, gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def read_tail(self, uri: str, max_bytes: int) -> tuple[bytes, int]:
        assert self.gate.wait(HANG_GUARD)
        return self.store.read_tail(uri, max_bytes)  # type: ignore[no-any-return]


def test_a_slow_fold_does_not_hold_the_reconcile_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's call comes back (None: pending) while the fold cannot finish;
    once it can, the next pass gets the folded metrics."""
    from kubernetes import client
    from trainforge.spec import TrainingJob, TrainingJobStatus
    from trainforge_controller.archive import Archiver, host_name
    from trainforge_controller.status import Decision, Observed

    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    art = ArtifactURIs.for_job("local://models/", "default", "j")
    store = open_store(art.metrics)
    store.write_bytes(art.log(host_name(0), 1), b"epoch 1 loss=0.5\n" + b"x" * 10 * MiB + b"\nepoch 2 loss=0.25\n")
    gate = threading.Event()
    archiver = Archiver(client.CoreV1Api(client.ApiClient()), lambda job, uri: GatedStore(open_store(uri), gate))
    job = TrainingJob.model_validate({**spec([{"name": "loss", "regex": r"loss=([0-9.]+)"}]),
                                      "metadata": {"name": "j"}})
    observed = Observed(now=datetime(2026, 1, 1, tzinfo=timezone.utc), artifacts=art, jobs=[{
        "metadata": {"name": "j-a1", "labels": {"trainforge.dev/attempt": "1"}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]}}])
    verdict = Decision(status=TrainingJobStatus(phase=Phase.COMPLETED))

    assert archiver.fold_metrics(job, observed, verdict) is None  # returned although the fold is stuck
    assert archiver.fold_metrics(job, observed, verdict) is None  # still pending, not started twice
    gate.set()
    wait_until(lambda: archiver.fold_metrics(job, observed, verdict) is not None, timeout=HANG_GUARD,
               what="the fold to finish")
    # the log is over FOLD_MAX_BYTES: only its end was folded
    assert [(r.name, r.value) for r in read_stored_records(store, art.metrics)] == [("loss", 0.25)]


# -- metric files: streamed, capped -------------------------------------------------------------
def _write_records(path: Path, count: int, extra: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.write(extra)
        for i in range(count):
            f.write(MetricRecord(timestamp=float(i), name="loss", value=float(i), step=i).to_json().encode() + b"\n")


def test_a_huge_metrics_file_keeps_the_last_records_up_to_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    _write_records(path, 200_000)
    with pytest.warns(UserWarning, match="200000 metric records, over the cap of 5000: kept the last 5000"):
        records = read_records(path, max_records=5000)
    assert len(records) == 5000 and records[0].step == 195_000 and records[-1].step == 199_999


def test_a_giant_line_is_skipped_without_being_held(tmp_path: Path) -> None:
    """A 64 MiB line with no newline (and a deeply nested one) before good
    records: skipped with a warning, and memory stays far below the line's size."""
    path = tmp_path / "metrics.jsonl"
    _write_records(path, 3, extra=b"[" * 60_000 + b"\n" + b"{" * (64 * MiB) + b"\n")
    tracemalloc.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = read_records(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [r.step for r in records] == [0, 1, 2]
    assert peak < 4 * MiB, f"peak {peak} bytes while reading"
    messages = [str(w.message) for w in caught]
    assert any(":1: skipping a malformed metric record" in m for m in messages)
    assert any(":2: skipping a malformed metric record: line longer than 65536 bytes" in m for m in messages)


def test_malformed_lines_warn_a_few_times_then_count(tmp_path: Path) -> None:
    text = "not json\n" * 1000 + MetricRecord(1.0, "a", 1.0).to_json() + "\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r.name for r in parse_records(text, source="m.jsonl")] == ["a"]
    assert len(caught) == 6 and "m.jsonl: skipped 995 more malformed metric records" in str(caught[-1].message)


def _stored_tail(uri_base: str) -> None:
    uri = uri_base + "j/metrics/metrics.jsonl"
    lines = [MetricRecord(float(i), "loss", float(i), i).to_json() for i in range(40_000)]
    data = ("\n".join(lines) + "\n").encode()
    store = open_store(uri)
    store.write_bytes(uri, data)
    tail, size = store.read_tail(uri, 1 * MiB)
    assert size == len(data) and tail == data[-MiB:]
    with pytest.warns(UserWarning, match="over the cap of 100000: read its end only"):
        records = read_stored_records(store, uri, max_bytes=100_000)
    assert records[-1].step == 39_999 and len(records) < 40_000
    assert records == [MetricRecord.from_json(line) for line in lines[-len(records):]]  # the cut line dropped


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for variable in ("TRAINFORGE_BACKEND", "TRAINFORGE_CONFIG", "TRAINFORGE_S3_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    yield tmp_path / "home"
    stop_leftovers()


def test_stored_metrics_are_read_from_their_tail_on_the_local_store(home: Path) -> None:
    _stored_tail("local://models/")


@pytest.mark.minio
def test_stored_metrics_are_read_from_their_tail_on_minio(home: Path, minio_bucket: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in minio_bucket.env().items():
        monkeypatch.setenv(key, value)
    _stored_tail(minio_bucket.uri())


# -- the local supervisor: the deadline holds ---------------------------------------------------
HOSTILE_TRAINER = '''
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
for _ in range(3):
    print("x" * (10 * 1024 * 1024), flush=True)   # 10 MB lines a backtracking (x+x+)+y never finishes
    print(("a" * 5000 + "!") * 2000, flush=True)
print("loss=0.5", flush=True)
time.sleep(600)
'''


def test_a_job_with_a_pathological_regex_still_ends_at_max_runtime(home: Path, tmp_path: Path) -> None:
    """With ``re`` the log pump would hold the GIL inside one match and starve
    the supervisor's deadline loop: the job would outlive maxRuntimeSeconds."""
    trainer = tmp_path / "hostile"
    (trainer / "trainer").mkdir(parents=True)
    (trainer / "trainer" / "start.py").write_text(HOSTILE_TRAINER)
    job = trainforge.submit({
        "metadata": {"name": "regex-bomb"},
        "spec": {"image": str(trainer), "stopping": {"maxRuntimeSeconds": 5, "gracePeriodSeconds": 1},
                 "metrics": [{"name": "bomb", "regex": r"(x+x+)+y"}, {"name": "tail", "regex": r"^(a+)+$"},
                             {"name": "loss", "regex": r"loss=([0-9.]+)"}]},
    })
    status = job.wait(timeout=HANG_GUARD, raise_on_failure=False)
    assert status.phase is Phase.FAILED
    assert status.failure_reason is not None and status.failure_reason.startswith("MaxRuntimeExceeded")
    assert status.start_time is not None and status.end_time is not None
    # ended by the deadline (plus the grace period and stage-out), not by the test's patience
    ran = datetime.fromisoformat(status.end_time) - datetime.fromisoformat(status.start_time)
    assert ran.total_seconds() < 5 + 1 + 60
    assert [(r.name, r.value) for r in job.backend.metrics(job.name)] == [("loss", 0.5)]


FLOODING_TRAINER = '''
import json, os
with open(os.environ["TRAINFORGE_METRICS_FILE"], "w") as f:
    f.write("{" * (64 * 1024 * 1024) + "\\n")            # one 64 MiB line
    for i in range(20_000):
        f.write(json.dumps({"timestamp": float(i), "name": "loss", "value": float(i), "step": i}) + "\\n")
print("flooded", flush=True)
'''


def test_job_metrics_of_a_flooding_trainer_are_capped(home: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``Job.metrics()`` streams the trainer's metrics file: the 64 MiB line is
    skipped without being held, and past the cap only the last records are kept."""
    import trainforge.metrics

    trainer = tmp_path / "flood"
    (trainer / "trainer").mkdir(parents=True)
    (trainer / "trainer" / "start.py").write_text(FLOODING_TRAINER)
    job = trainforge.submit({"metadata": {"name": "flood"}, "spec": {"image": str(trainer)}})
    assert job.wait(timeout=HANG_GUARD).phase is Phase.COMPLETED
    monkeypatch.setattr(trainforge.metrics, "MAX_RECORDS", 1000)
    tracemalloc.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = job.backend.metrics(job.name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(records) == 1000 and records[-1].step == 19_999
    assert peak < 16 * MiB, f"peak {peak} bytes while reading"
    assert any("over the cap of 1000: kept the last 1000" in str(w.message) for w in caught)
    assert job.status().final_metrics == {"loss": 19_999.0}


def test_the_one_search_prefilter_changes_no_result() -> None:
    """Lines are first searched with the alternation of every regex; what each
    regex finds alone is what the parser finds (scoped flags, named groups)."""
    regexes = [r"(?i)LOSS=([0-9.]+)", r"acc=(?P<v>[0-9.]+)", r"lr=(?P<v>[0-9.e-]+)", r"^step (\d+)$",
               r"(x+x+)+y", r"val[_:]acc=([0-9.]+)"]
    lines = ["Loss=0.5 acc=0.9", "ACC=1 lr=1e-3", "step 12", "step 12 ", "x" * 100 + "y", "val:acc=0.7",
             "nothing here", "loss=1\racc=2\rlr=3"]
    together = MetricParser([{"name": f"m{i}", "regex": r} for i, r in enumerate(regexes)])
    alone = [MetricParser([{"name": f"m{i}", "regex": r}]) for i, r in enumerate(regexes)]
    for line in lines:
        found = sorted((r.name, r.value) for r in together.feed(line, 0.0))
        expected = sorted((r.name, r.value) for p in alone for r in p.feed(line, 0.0))
        assert found == expected, line
