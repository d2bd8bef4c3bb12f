"""A TCP proxy in front of the local world that can fail like a network: for tests of retries."""

from __future__ import annotations

import socket
import struct
import threading
import time


class FaultyProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` until told to fail.

    ``outage(seconds)`` resets every open connection and every new one for that long (``inf``: for
    good); ``cut_after(n)`` lets ``n`` more response bytes through, then makes a 0.5 s outage, so a
    transfer breaks midway. ``refused`` and ``cuts`` count what was done. ``hold`` (seconds) delays
    each response, as a distant endpoint would; ``most_in_flight`` is the most requests that were
    waiting for their response at once (1: one after another). Use as a context manager.
    """

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.refused = 0
        self.hold = 0.0
        self.most_in_flight = 0
        self._in_flight = 0
        self.cuts = 0
        self._down_until = 0.0
        self._cut_at: int | None = None
        self._forwarded = 0  # response bytes sent to clients
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def outage(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            _reset(sock)

    def cut_after(self, response_bytes: int) -> None:
        with self._lock:
            self._cut_at = self._forwarded + response_bytes

    def close(self) -> None:
        self.listener.close()
        self.outage(float("inf"))

    def __enter__(self) -> "FaultyProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if time.monotonic() < self._down_until:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._live.update((client, upstream))
            waiting = [False]  # a request sent on this connection, its response not begun
            threading.Thread(target=self._pipe, args=(client, upstream, False, waiting), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True, waiting), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, response: bool, waiting: list[bool]) -> None:
        try:
            while data := source.recv(65536):
                cut = False
                if not response and not waiting[0]:
                    with self._lock:
                        waiting[0] = True
                        self._in_flight += 1
                        self.most_in_flight = max(self.most_in_flight, self._in_flight)
                if response and waiting[0]:
                    time.sleep(self.hold)
                    with self._lock:
                        waiting[0] = False
                        self._in_flight -= 1
                if response:
                    with self._lock:
                        cut = self._cut_at is not None and self._forwarded + len(data) > self._cut_at
                        if cut:
                            data, self._cut_at = data[:self._cut_at - self._forwarded], None  # type: ignore[operator]
                        self._forwarded += len(data)
                sink.sendall(data)
                if cut:
                    self.cuts += 1
                    self.outage(0.5)
                    return
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset. ``shutdown`` first: a thread blocked in ``recv`` on the socket
    would otherwise keep it open (closing the descriptor does not wake it), and the peer would
    wait for a timeout instead of seeing the failure."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
