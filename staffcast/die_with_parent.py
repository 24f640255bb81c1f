"""Processes staffcast starts die with it, even when it is SIGKILLed (Linux).

The local Prefect server (staffcast.prefect_server) and the forecast worker processes
(flows.weekly_forecast) call :func:`die_with_parent` as they start. The workers hang off the
multiprocessing forkserver, which hangs off the run, and none of them notices a SIGKILL of the
run by itself (each holds both ends of its queues); the forkserver gets the same through its
preload, staffcast._forkserver_preload. The run's own process never calls it: a run started
with nohup must outlive its shell.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to send SIGTERM to this process when its parent dies (Linux only)."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
