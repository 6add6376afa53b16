"""orphans: a trainer outliving its supervisor is found by pid and start time
and ended; a reused pid or a gone process is left alone."""

from __future__ import annotations

import subprocess

from trainforge.backends.local.orphans import end_orphan, process_record, process_start_ticks


def _trainer() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_a_recorded_process_group_is_killed() -> None:
    trainer = _trainer()
    record = process_record(trainer.pid)
    assert record["start"] == process_start_ticks(trainer.pid) is not None
    assert end_orphan(record) == f"its trainer (process group {trainer.pid}) was killed"
    assert trainer.wait(timeout=10) == -9


def test_a_pid_with_another_start_time_is_not_touched() -> None:
    trainer = _trainer()
    try:
        reused = {**process_record(trainer.pid), "start": process_start_ticks(trainer.pid) - 1}
        assert end_orphan(reused) is None
        assert trainer.poll() is None  # still running
    finally:
        trainer.kill()
        trainer.wait()


def test_gone_and_unknown_records_end_nothing() -> None:
    trainer = _trainer()
    record = process_record(trainer.pid)
    trainer.kill()
    trainer.wait()
    assert end_orphan(record) is None
    assert end_orphan({"kind": "vm", "id": "x"}) is None
