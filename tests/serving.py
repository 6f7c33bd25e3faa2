"""What the real-browser tests and the browser benchmarks (bench/browser.py, bench/load.py) share: Debian's
Chromium and how it is started, the selector of an idle script, and a served Streamlit app (`ketamine-outcomes
serve`, the minimal app, …) on a free port, stopped with its whole process group afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

CHROMIUM = os.environ.get("KETAMINE_OUTCOMES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
# an iPhone's User-Agent: the dashboard lays its charts out for a phone when the browser says it is one
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.0 Mobile/15E148 Safari/604.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(base: str) -> bool:
    """Whether the Streamlit server at `base` answers its health check."""
    try:
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


def wait_until_answering(base: str, proc: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    """Wait until the server `proc` started answers at `base`; RuntimeError with its log when it exits first or
    does not answer within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not answers(base):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.3)


def child_pids(pid: int) -> list[int]:
    """The process ids of `pid`'s children (Linux /proc): `serve`'s Streamlit runs in a process group of its
    own (cli.run_until_stopped), so killing the command's group does not reach it."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def served(command: Sequence[str], log: Path, *, port: int | None = None, env: Mapping[str, str] | None = None,
           cwd: Path | None = None, timeout_s: float = 90) -> Iterator[str]:
    """Run `command`, whose "{port}" stands for the port (a free one unless given), and yield the address
    http://127.0.0.1:PORT once `/_stcore/health` answers ok. Its output goes to `log`. Raises RuntimeError
    with the log when it exits or does not answer within `timeout_s`. Afterwards its process group is sent
    SIGTERM (`serve` passes it on to its Streamlit child, cli.run_until_stopped); it and its children are
    killed if it does not stop within 20 s."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen([part.replace("{port}", str(port)) for part in command], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd,
                                env=None if env is None else dict(env))
    children: list[int] = []
    try:
        wait_until_answering(base, proc, log, timeout_s)
        children = child_pids(proc.pid)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            kill_all(children)
            proc.wait(timeout=10)


def dashboard_command(db: Path | str, *more: str) -> list[str]:
    """`ketamine-outcomes serve --db DB` from this checkout, on 127.0.0.1 and the port `served` chooses."""
    return [sys.executable, "-m", "dashboard.cli", "serve", "--db", str(db), *more, "--port", "{port}",
            "--address", "127.0.0.1"]
