"""Phase leases: which process runs a worker phase, and whether that process still lives.

A runner is written as ``node|pid|start|machine``: the Celery node name, the pid of the
pool process running the task, that process's start time (clock ticks since boot, so a
re-used pid is not mistaken for it) and a machine key (boot id + pid namespace: pids of
two containers on one host, or of one host before and after a reboot, are not
comparable). A lease is alive when

- the runner's machine key equals ours: its process exists and started at ``start``
  (a pool child killed by the kernel or by ``kill -9`` frees its lease at once);
- otherwise (another machine or container, or a platform without /proc): its
  heartbeat is younger than ``LEASE_SECONDS``.

The running process renews its heartbeat every ``HEARTBEAT_EVERY`` seconds from a
background thread (``progress.LeaseKeeper``), independent of progress reports: an
epoch of the larger profiles reports once in minutes. Six missed renewals in a row
free the lease; a phase on the same machine is never taken while its process lives.
This module reads only /proc and the clock: no database.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

HEARTBEAT_EVERY = 5.0
LEASE_SECONDS = 30.0
# How often a worker sweeps for phases whose lease has lapsed (``tasks``): with a
# 30 s lease, a phase on another machine is re-scheduled at most 45 s after its
# last heartbeat.
SWEEP_EVERY = 15.0
TAKEOVER_SECONDS = LEASE_SECONDS + SWEEP_EVERY
NODE_CHARS = 100  # the runner column holds 200 characters; the rest fits in about 70


@dataclass(frozen=True)
class Runner:
    node: str
    pid: int | None = None
    start: str = ""
    machine: str = ""

    def __str__(self) -> str:
        return f"{self.node[:NODE_CHARS]}|{self.pid or ''}|{self.start}|{self.machine}"

    @classmethod
    def parse(cls, text: str) -> Runner:
        """Read a runner string; the older ``node|pid`` form has no start time or machine."""
        parts = (text.split("|") + ["", "", ""])[:4]
        pid = int(parts[1]) if parts[1].isdigit() else None
        return cls(node=parts[0], pid=pid, start=parts[2], machine=parts[3])

    def describe(self) -> str:
        return f"process {self.pid} of {self.node}" if self.pid else self.node or "an unnamed runner"


@functools.cache
def machine_key() -> str:
    """Boot id and pid namespace of this process; "" where /proc is missing (pids not checked)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}:{namespace}"


def _stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of a process from /proc/<pid>/stat, None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and brackets
    return fields[0], fields[19]


def this_process(node: str) -> str:
    """The runner string of the calling process (computed per call: pool children are forks)."""
    pid = os.getpid()
    stat = _stat(pid) if machine_key() else None
    return str(Runner(node=node or "local", pid=pid, start=stat[1] if stat else "", machine=machine_key()))


def checkable(runner: Runner) -> bool:
    """True when ``runner`` ran on this machine and pid namespace, so its process can be looked up."""
    return bool(runner.machine) and runner.machine == machine_key() and runner.pid is not None and bool(runner.start)


def process_alive(runner: Runner) -> bool:
    stat = _stat(runner.pid) if runner.pid else None
    # A zombie has ended: its parent (the Celery main process) has not reaped it yet.
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == runner.start


def lease_gone(runner_text: str, heartbeat: datetime | None, now: datetime) -> str | None:
    """Why the lease held by ``runner_text`` is free (a sentence fragment), or None while it is alive."""
    runner = Runner.parse(runner_text)
    if checkable(runner):
        return None if process_alive(runner) else f"{runner.describe()} has ended"
    if heartbeat is None:
        return f"{runner.describe()} never reported"
    age = (now - heartbeat).total_seconds()
    if age > LEASE_SECONDS:
        return f"{runner.describe()} has not reported for {age:.0f} s (the lease lasts {LEASE_SECONDS:.0f} s)"
    return None
