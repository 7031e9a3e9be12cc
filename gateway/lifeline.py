"""No process of `casetrail serve` outlives it: when `casetrail serve` dies without stopping its
children (SIGKILL, the OOM killer, a crash), its API workers and its children stop by
themselves, as they do when it stops them.

Without this, a `casetrail serve` with several workers killed with SIGKILL left its workers
serving on the port, unsupervised (and its `projections run` child following), holding the
port a restarted `casetrail serve` needs (issue 22, the crash campaign). systemd's
default `KillMode=control-group` hides it (ops/casetrail.service); `make run`, a container
without an init, or any other supervisor does not.

Two kinds of child, two ways of noticing, both ending in SIGTERM to the child itself, so that
it stops the way it stops when its parent stops it (the followers' positions and the relay's
commit as usual):
- an API worker (uvicorn spawns it with multiprocessing): `exit_with_spawning_process` waits on
  the pipe multiprocessing keeps open from the parent, closed by the kernel when it dies;
- a supervised command (`projections run`, `relay run`, started by `gateway.supervisor` with
  `--supervised-by PID`): `exit_with` looks every second whether its parent is still that PID.
  Only a command that was told its supervisor watches: the same command run by an operator
  (a shell that exits, nohup) keeps running.
The embedded nats-server (a Go binary) is not covered: an orphaned one keeps its port, and the
next start's broker is retried until it is free (`gateway.supervisor`).

Proven by tests/reliability/test_crash_safety.py (`test_sigkilled_serve_leaves_no_process`:
every process of a two-worker `casetrail serve` gone after SIGKILL, and a restart on the same
port serving again with every check of the campaign).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from typing import Final

from gateway.logs import get_logger

log = get_logger("casetrail.lifeline")

SUPERVISED_BY_OPTION: Final = "--supervised-by"
_POLL_SECONDS: Final = 1.0


def _stop_this_process(parent: str) -> None:
    log.warning("parent_gone_stopping", parent=parent)
    os.kill(os.getpid(), signal.SIGTERM)


def exit_with_spawning_process() -> None:
    """In a process multiprocessing spawned (an API worker): SIGTERM to this process as soon as
    its parent is gone. Nothing in any other process (one worker: uvicorn runs in `serve`)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the pipe closes: it has ended
        _stop_this_process("spawning_process")

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def exit_with(parent_pid: int | None) -> None:
    """For a command started with `--supervised-by PID`: SIGTERM to this process once its
    parent is no longer that PID (it died, and this process was handed to another). None: the
    command was not started by a supervisor; nothing to watch."""
    if parent_pid is None:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_POLL_SECONDS)
        _stop_this_process("supervisor")

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
