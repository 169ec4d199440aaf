"""DataLoader workers that end with their parent.

A worker process blocks on its queue; when the parent is killed outright (kill -9, the OOM
killer) nothing tells it to stop, and a build's workers were seen holding about 600 MB each
minutes later. On Linux the kernel can send a signal to a process when its parent dies
(prctl PR_SET_PDEATHSIG); elsewhere a watchdog thread polls the parent's pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_parent(_worker_id: int = 0) -> None:
    """DataLoader worker_init_fn: end this process when its parent dies."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()


def _watch(parent: int, interval_s: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)
