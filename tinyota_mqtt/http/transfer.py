"""Moving a download's bytes: the kernel's sendfile on a socket Tornado owns, and a watch that
cuts a reader who stopped taking them.

Neither knows HTTP; ``firmware.py`` decides when each is used.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

# Bytes asked of one sendfile call. A call sends at most what the socket buffer has room for, so
# for a device this changes nothing; for a fast reader on loopback it bounds how long one download
# keeps the loop before the others get a turn (1 MiB: well under a millisecond).
SENDFILE_BLOCK = 1024 * 1024


class FileSender:
    """Sends ``count`` bytes of an open file from ``offset`` to a connected, non-blocking socket
    with ``os.sendfile``: the bytes go from the page cache to the socket without passing through
    Python.

    The socket belongs to a Tornado IOStream, which has it registered with the event loop for
    reading (to notice the peer going away) and, whenever its own write buffer holds data, for
    writing. asyncio keeps one writer callback per descriptor, and Tornado neither knows of nor
    removes one it did not add: registering ours on the stream's descriptor would outlive the
    stream when Tornado closes it, and a new connection given the same number would find a stale
    registration. So the sender waits for writability on a duplicate of the descriptor, which is
    its own to register and to close; the caller starts it only once Tornado's write buffer is
    empty (the headers went out), and writes nothing through Tornado until the future resolves.

    The writer callback stays registered for the whole body. epoll is level-triggered, so it runs
    when the socket can take more and not at all while a slow device's window is shut: a stalled
    device costs no CPU. ``on_progress`` is called after every call that moved bytes.
    """

    def __init__(self, sock: socket.socket, file_fd: int, offset: int, count: int,
                 on_progress: Callable[[], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.sock_fd = sock.fileno()
        self.file_fd, self.offset, self.remaining = file_fd, offset, count
        self.on_progress = on_progress
        self.sent = 0
        self.done: asyncio.Future[None] = self.loop.create_future()
        self._fd: int | None = None

    def start(self) -> asyncio.Future[None]:
        """Begin sending; the future resolves when every byte was handed to the kernel, or fails
        with the OSError that stopped it (EPIPE, ECONNRESET...), EOFError when the file is shorter
        than promised, or whatever :meth:`stop` was given."""
        if self.remaining <= 0:
            self.done.set_result(None)
            return self.done
        self._fd = os.dup(self.sock_fd)
        # The socket's buffer is empty after the headers: usually the first call needs no wait.
        self._send()
        if self._fd is not None:
            self.loop.add_writer(self._fd, self._send)
        return self.done

    def stop(self, exc: BaseException) -> None:
        """End the transfer now (the connection closed, or the reader stalled); idempotent."""
        self._end(exc)

    def _send(self) -> None:
        if self._fd is None:
            return
        try:
            n = os.sendfile(self._fd, self.file_fd, self.offset, min(self.remaining, SENDFILE_BLOCK))
        except BlockingIOError:
            return  # the socket's buffer is full: the writer callback runs again when it drains
        except OSError as exc:
            self._end(exc)
            return
        if n == 0:
            self._end(EOFError(f"the file ended {self.remaining} bytes before the promised length"))
            return
        self.offset += n
        self.remaining -= n
        self.sent += n
        self.on_progress()
        if self.remaining == 0:
            self._end(None)

    def _end(self, exc: BaseException | None) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Unregister before closing: the number may be handed to a new socket at once.
            self.loop.remove_writer(fd)
            os.close(fd)
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)


class StallWatch:
    """Calls ``on_stall`` once, when ``progress`` has not been called for ``timeout`` seconds.

    One timer per transfer, re-armed for what is left of the timeout when it fires, rather than
    rescheduled on every chunk: a thousand open downloads cost a thousand timers, not a thousand
    timer reschedules per round of sends.
    """

    def __init__(self, timeout: float, on_stall: Callable[[float], None]) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout, self.on_stall = timeout, on_stall
        self.last = self.loop.time()
        self._timer: asyncio.TimerHandle | None = self.loop.call_later(timeout, self._check)

    def progress(self) -> None:
        self.last = self.loop.time()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        idle = self.loop.time() - self.last
        if idle < self.timeout:
            self._timer = self.loop.call_later(self.timeout - idle, self._check)
            return
        self._timer = None
        self.on_stall(idle)
