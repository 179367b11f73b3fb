"""The run's workspace: a scratch directory, one mosquitto for every MQTT scenario, and the peers.

Each scenario builds its own servers inside the lab and stops them when it ends, so one
scenario's leftovers (open sockets, a warm registry) never flatter or burden the next.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.peers import Device, Firmware, Mosquitto, Nginx, Peer, Stdlib, Tinyota
from bench.util import own_cpu_seconds


class Lab:
    def __init__(self, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tinyota-bench-"))
        self.keep = keep
        self.mosquitto = Mosquitto(self.root / "mosquitto")
        self._count = 0
        self.peers: list[Peer] = []  # every server made, in order: their CPU seconds per scenario

    def __enter__(self) -> Lab:
        self.mosquitto.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mosquitto.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _dir(self, name: str) -> Path:
        self._count += 1
        return self.root / f"{self._count:02d}-{name}"

    def tinyota(self, devices: Sequence[Device], *, prefix: str, auto_update: bool = False,
                rollout: str | None = None) -> Tinyota:
        """A tinyota whose MQTT prefix no earlier server in this lab used: the broker keeps
        retained messages, and another run's leftovers must not be mistaken for this one's."""
        directory = self._dir(f"tinyota-{prefix}")
        peer = Tinyota(directory, devices, self.mosquitto.url, prefix=f"{prefix}{self._count}",
                       auto_update=auto_update, rollout=rollout)
        self.peers.append(peer)
        return peer

    def http_peers(self, devices: Sequence[Device], firmware: Sequence[Firmware]) -> list[Peer]:
        """nginx and the two stdlib baselines, serving tinyota's store files to the same accounts."""
        made = [Nginx(self._dir("nginx"), devices, firmware),
                Stdlib(self._dir("stdlib-threaded"), devices, firmware, threaded=True),
                Stdlib(self._dir("stdlib-single"), devices, firmware, threaded=False)]
        self.peers += made
        return made

    def cpu_mark(self) -> tuple[int, float, float]:
        return len(self.peers), self.mosquitto.cpu(), own_cpu_seconds()

    def cpu_since(self, mark: tuple[int, float, float]) -> dict[str, Any]:
        """CPU seconds since ``mark``: each server made (and stopped) since, over its whole life
        (start, warm-up and measurement), the broker's, and the bench's own (its clients)."""
        first, broker, own = mark
        servers: dict[str, float] = {}
        for peer in self.peers[first:]:
            if peer.cpu_s is not None:
                servers[peer.name] = servers.get(peer.name, 0.0) + peer.cpu_s
        return {"servers": {k: round(v, 2) for k, v in servers.items()},
                "mosquitto": round(self.mosquitto.cpu() - broker, 2),
                "bench_clients": round(own_cpu_seconds() - own, 2)}


@contextlib.contextmanager
def running(*peers: Peer) -> Iterator[None]:
    """Start every peer, and stop every one that started, whatever happens in between."""
    started: list[Peer] = []
    try:
        for peer in peers:
            peer.start()
            started.append(peer)
        yield
    finally:
        for peer in reversed(started):
            peer.stop()
