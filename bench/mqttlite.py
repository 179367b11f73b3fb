"""A minimal MQTT 3.1.1 client over asyncio streams, for simulating a thousand devices at once.

paho runs one network thread per client, so a thousand paho devices would be a thousand threads
fighting over one GIL and the bench would measure itself. A device here is one coroutine and
one socket: CONNECT, SUBSCRIBE, PUBLISH (QoS 0 and 1), PUBACK for what it receives, DISCONNECT.
No reconnect, no QoS 2, no keepalive pings (keepalive 0): the scenarios are short and on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable

# Packet types (high nibble of the fixed header).
CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, DISCONNECT = 1, 2, 3, 4, 8, 9, 14

# on_message(topic, payload, retained, loop.time() when it was read)
MessageCallback = Callable[[str, bytes, bool, float], None]


class MqttError(RuntimeError):
    pass


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, *, will: tuple[str, bytes] | None = None, clean: bool = True) -> bytes:
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain: what esp_client sets
        payload += _str(will[0]) + _str(will[1])
    header = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", 0)  # keepalive 0: no pings needed
    return _packet(CONNECT << 4, header + payload)


def publish_packet(topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, packet_id: int = 0) -> bytes:
    first = (PUBLISH << 4) | (qos << 1) | (1 if retain else 0)
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet(first, body)


class MqttLite:
    """One connection. ``on_message`` runs on the loop for every PUBLISH received."""

    def __init__(self, client_id: str, on_message: MessageCallback | None = None) -> None:
        self.client_id = client_id
        self.on_message = on_message
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[None]] = {}  # SUBACK / PUBACK by packet id
        self.closed = asyncio.Event()

    async def connect(self, host: str, port: int, *, will: tuple[str, bytes] | None = None,
                      timeout: float = 10.0) -> MqttLite:
        self._reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        self._writer = writer
        writer.write(connect_packet(self.client_id, will=will))
        first, body = await asyncio.wait_for(self._read_packet(), timeout)
        if first >> 4 != CONNACK or len(body) != 2 or body[1] != 0:
            raise MqttError(f"{self.client_id}: broker refused the connection ({body!r})")
        self._task = asyncio.create_task(self._read_forever())
        return self

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def subscribe(self, topics: list[tuple[str, int]], timeout: float = 10.0) -> None:
        pid = self._packet_id()
        body = struct.pack("!H", pid) + b"".join(_str(t) + bytes([q]) for t, q in topics)
        done = self._expect(pid)
        self._write(_packet((SUBSCRIBE << 4) | 0x02, body))
        await asyncio.wait_for(done, timeout)

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> asyncio.Future[None] | None:
        """Queue a PUBLISH; for QoS 1 the returned future completes on the broker's PUBACK."""
        if qos == 0:
            self._write(publish_packet(topic, payload, retain=retain))
            return None
        pid = self._packet_id()
        acked = self._expect(pid)
        self._write(publish_packet(topic, payload, qos=1, retain=retain, packet_id=pid))
        return acked

    async def drain(self) -> None:
        assert self._writer is not None
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer is None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.write(bytes([DISCONNECT << 4, 0]))
            await self._writer.drain()
        await self.abort()

    async def abort(self) -> None:
        """Drop the socket without DISCONNECT: the broker publishes the will, like a reboot."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._writer = None
        self.closed.set()

    # -- internals -------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise MqttError(f"{self.client_id}: not connected")
        self._writer.write(data)

    def _expect(self, pid: int) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[pid] = future
        return future

    async def _read_packet(self) -> tuple[int, bytes]:
        assert self._reader is not None
        head = await self._reader.readexactly(2)
        first, length, shift, byte = head[0], head[1] & 0x7F, 7, head[1]
        while byte & 0x80:
            byte = (await self._reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
        return first, await self._reader.readexactly(length) if length else b""

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                first, body = await self._read_packet()
                kind = first >> 4
                if kind == PUBLISH:
                    qos = (first >> 1) & 0x03
                    (tlen,) = struct.unpack_from("!H", body)
                    topic = body[2:2 + tlen].decode()
                    start = 2 + tlen
                    if qos:
                        pid = body[start:start + 2]
                        start += 2
                        self._write(bytes([PUBACK << 4, 2]) + pid)
                    if self.on_message is not None:
                        self.on_message(topic, body[start:], bool(first & 0x01), loop.time())
                elif kind in (SUBACK, PUBACK):
                    (pid,) = struct.unpack_from("!H", body)
                    future = self._waiting.pop(pid, None)
                    if future is not None and not future.done():
                        future.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            for future in self._waiting.values():
                future.cancel()  # whoever awaits it learns the connection is gone; nobody else warns
            self._waiting.clear()


async def connect_many(host: str, port: int, ids: list[str], *, on_message: MessageCallback | None = None,
                       batch: int = 100, will: Callable[[str], tuple[str, bytes]] | None = None) -> list[MqttLite]:
    """Connect one client per id, ``batch`` at a time so the broker's listen queue never overflows."""
    clients: list[MqttLite] = []
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        clients += await asyncio.gather(*(
            MqttLite(cid, on_message).connect(host, port, will=will(cid) if will else None) for cid in chunk))
    return clients


async def close_all(clients: list[MqttLite]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
