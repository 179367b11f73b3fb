"""Shared small pieces: file-descriptor limits, ports, waiting for a server, memory, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psutil

MiB = 1024 * 1024
KiB = 1024


def raise_fd_limit(want: int = 32768) -> int:
    """A thousand clients plus the servers' sockets need more than the usual 1024 descriptors.

    Children inherit the limit, so raising it here covers nginx, mosquitto and tinyota too.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def die_with_parent() -> None:
    """For ``Popen(preexec_fn=...)``: the child gets SIGTERM when the bench dies, however it dies.

    The bench starts a dozen servers; a bench killed by a CI timeout must not leave them running.
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(port: int, path: str = "/", timeout: float = 0.5) -> int | None:
    """The status line's code of one tiny GET, or None while nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _tree(pid: int) -> list[psutil.Process]:
    """A process and its live children (nginx's master and worker count together); [] if gone."""
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def rss_of(pid: int) -> int:
    """Resident memory of a process and its children (nginx's master and worker), in bytes."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process and its live children have used, in seconds.

    nginx's master and worker count together. psutil reads /proc/<pid>/stat; the ticks it reports
    are 10 ms, so a figure below ~0.05 s says little.
    """
    total = 0.0
    for p in _tree(pid):
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def own_cpu_seconds() -> float:
    """The bench process's own CPU time (its clients), not its children's (the servers)."""
    times = os.times()
    return times.user + times.system


class PeakRss:
    """Samples a process's RSS in the background while a block runs; ``peak`` is the maximum."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_of(self.pid))
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> PeakRss:
        self.peak = rss_of(self.pid)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, rss_of(self.pid))


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile: an observed value, not an interpolation between two."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "?"


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    import paho.mqtt
    import tornado

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tornado": tornado.version,
        "paho_mqtt": paho.mqtt.__version__,
        "nginx": _version_of(["nginx", "-v"]).removeprefix("nginx version: nginx/"),
        "mosquitto": _version_of(["mosquitto", "-h"]).removeprefix("mosquitto version "),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
