"""``postroom run`` as a real process tree: it serves, restarts a killed child, and stops whole."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from postroom.core.tests.processes import RunningProcess, clean_environment, process_alive, running_postroom
from postroom.supervisor import GRACE_SECONDS
from postroom.testing.dovecot import free_port

# `postroom run` migrates a new SQLite database before it starts its children: on a loaded
# 2-core machine (the suite's two workers and their servers) that alone has taken over 60 s.
STARTUP_SECONDS = 180


def child_pids(server: RunningProcess, role: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"started {role} \(pid (\d+)\)", server.output())]


def survivors(pids: list[int], timeout: float) -> list[int]:
    """The processes still running after ``timeout``; they are killed so a failure leaves none."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process_alive(pid) for pid in pids):
        time.sleep(0.1)
    left = [pid for pid in pids if process_alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def test_run_serves_restarts_a_killed_child_and_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    with running_postroom("run", "--port", str(port), environment=clean_environment(tmp_path), port=port, output_path=tmp_path / "output.log") as server:
        server.wait_for_output("started worker (pid", timeout=STARTUP_SECONDS)
        server.wait_for_http("/health")
        assert server.request("GET", "/health").status == 200
        (first_web,) = child_pids(server, "web")
        (worker,) = child_pids(server, "worker")

        os.kill(first_web, signal.SIGKILL)
        server.wait_for_output("started web (pid", occurrences=2)
        second_web = child_pids(server, "web")[-1]
        assert second_web != first_web
        assert not process_alive(first_web)
        server.wait_for_http("/health")
        assert server.request("GET", "/health").status == 200
        assert child_pids(server, "worker") == [worker]  # the other child was left alone

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=GRACE_SECONDS + 10) == 0
        assert not survivors([second_web, worker], timeout=5)
        assert "postroom: stopped" in server.output()
        assert "did not stop" not in server.output()  # both stopped on SIGTERM, none needed SIGKILL


def test_children_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    port = free_port()
    with running_postroom("run", "--port", str(port), environment=clean_environment(tmp_path), port=port, output_path=tmp_path / "output.log") as server:
        server.wait_for_output("started worker (pid", timeout=STARTUP_SECONDS)
        server.wait_for_http("/health")
        children = child_pids(server, "web") + child_pids(server, "worker")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        # Orphans are reparented and reaped by init (or a subreaper); none may keep running.
        assert not survivors(children, timeout=GRACE_SECONDS + 5)
