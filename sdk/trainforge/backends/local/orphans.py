"""A trainer that outlives its supervisor.

The supervisor records what it started (``trainer.json`` in the job folder:
a process group, or a container and its engine) and clears the record when
the trainer has ended. Whoever then finds the supervisor dead ends what the
record names, so a job reported Failed is not still training, holding a GPU
and writing files. A process is matched by pid *and* start time, never a
reused pid.
"""

from __future__ import annotations

import os
import signal
from typing import Any


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_record(pid: int) -> dict[str, Any]:
    """The record of a trainer started as the leader of its own process group."""
    return {"kind": "process", "pgid": pid, "start": process_start_ticks(pid)}


def container_record(container_id: str, name: str, docker_host: str) -> dict[str, Any]:
    return {"kind": "container", "id": container_id, "name": name, "docker_host": docker_host}


def end_orphan(record: dict[str, Any]) -> str | None:
    """End what ``record`` names if it still runs; what was ended, or None."""
    if record.get("kind") == "group":  # a multi-host attempt: one record per host
        ended = [what for member in record.get("members", []) if (what := end_orphan(member))]
        return "; ".join(ended) or None
    if record.get("kind") == "process":
        pgid = int(record["pgid"])
        if record.get("start") is None or process_start_ticks(pgid) != record["start"]:
            return None  # gone, or the pid now belongs to another process
        try:
            os.killpg(pgid, signal.SIGKILL)  # data loader workers and torchrun children too
        except ProcessLookupError:
            return None
        return f"its trainer (process group {pgid}) was killed"
    if record.get("kind") == "container":
        from .container import remove_container  # the docker SDK stays behind container.py

        if not remove_container(record["docker_host"], record["id"]):
            return None
        return f"its trainer container {record.get('name') or record['id'][:12]} was removed"
    return None
