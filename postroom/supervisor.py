"""Runs Postroom's roles as child processes for the embedded shape.

Each child is an ordinary ``postroom <role>`` process, the same one the scaled-out shape starts
on its own. A child that exits is restarted with a growing delay (1 s … 60 s, reset after it has
run for a minute). Ctrl-C or SIGTERM stops every child — SIGTERM first, SIGKILL after a grace
period — and then the supervisor exits. On Linux each child also asks the kernel for SIGTERM
when the supervisor dies, so even a SIGKILLed supervisor leaves no orphan holding the port or
the database.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

GRACE_SECONDS = 10
STABLE_SECONDS = 60
MAX_DELAY = 60.0


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = 1.0
    restart_at: float = 0.0
    restarts: int = field(default=0)

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, preexec_fn=_terminate_with_parent)  # noqa: S603 (our own fixed argv; no threads, so preexec_fn is safe)
        self.started_at = time.monotonic()
        print(f"postroom: started {self.name} (pid {self.process.pid})", flush=True)


class Supervisor:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.stopping = False

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        for child in self.children:
            child.start()
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                process = child.process
                if process is not None and process.poll() is not None:
                    ran_for = now - child.started_at
                    child.delay = 1.0 if ran_for >= STABLE_SECONDS else min(child.delay * 2, MAX_DELAY)
                    child.restart_at = now + child.delay
                    child.process = None
                    print(f"postroom: {child.name} exited with code {process.returncode}; restarting in {child.delay:.0f} s", flush=True)
                elif process is None and now >= child.restart_at:
                    child.restarts += 1
                    child.start()
            time.sleep(0.2)
        return self.stop()

    def stop(self) -> int:
        print("postroom: stopping…", flush=True)
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"postroom: {child.name} did not stop in {GRACE_SECONDS} s; killing it", flush=True)
                child.process.kill()
                child.process.wait()
        print("postroom: stopped", flush=True)
        return 0


_PR_SET_PDEATHSIG = 1
# Loaded here, not between fork and exec, where as little as possible should run.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _terminate_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM to it when the supervisor dies."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def role_command(role: str, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "postroom", role, *arguments]
