"""``trainforge ui`` refuses what it cannot do with one line and exit 4."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from trainforge.cli import main


def test_ui_on_a_taken_port_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["ui", "--port", str(port)])
    assert result.exit_code == 4
    assert result.output.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and "Traceback" not in result.output


def test_ui_namespace_is_for_the_kubernetes_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["ui", "--backend", "process", "--namespace", "team-a", "--port", "0"])
    assert result.exit_code == 2 and "--namespace is for the kubernetes backend" in result.output
