"""A scripted HTTP/1.1 server for answers and connection behaviour the real simserve never
produces: malformed bodies, hostile headers, kept-alive connections closed at a chosen
request. Each request is handed to a `reply` function, which returns the raw answer bytes
(`answer`, `json_answer`) or says to close the connection unanswered."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

CLOSE: Literal["close"] = "close"
"""Close the connection without answering, once the request has been read (a FIN)."""
RESET: Literal["reset"] = "reset"
"""Close the connection without answering with a TCP reset, once the request has been read."""

Reply = bytes | Literal["close", "reset"]


@dataclass(frozen=True)
class Request:
    """One request as the fake server read it."""

    connection: int
    """1 for the first connection the server accepted, 2 for the next, ..."""
    number: int
    """1 for the first request on its connection, 2 for the next, ..."""
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def answer(
    status: int = 200,
    body: bytes = b"",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    close: bool = False,
    length: int | None = None,
) -> bytes:
    """The bytes of an answer: keep-alive unless `close`; `length` is the content-length
    announced (the body's own by default; give more to cut the answer short)."""
    head = [f"HTTP/1.1 {status} Whatever", f"content-type: {content_type}"]
    head.append(f"content-length: {len(body) if length is None else length}")
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def json_answer(value: Any, status: int = 200, **kwargs: Any) -> bytes:
    """`answer` with `value` as its JSON body."""
    return answer(status, json.dumps(value).encode(), **kwargs)


def problem(http_status: int, /, headers: dict[str, str] | None = None, **fields: Any) -> bytes:
    """A problem+json answer holding `fields` as they are (of any JSON type)."""
    body = json.dumps(fields).encode()
    return answer(http_status, body, "application/problem+json", headers=headers)


def always(reply: Reply) -> Callable[[Request], Reply]:
    """A `reply` function giving the same reply to every request."""
    return lambda request: reply


class FakeServer:
    """Serves `reply` on a free loopback port until closed (a context manager); `requests`
    lists every request read, in order."""

    def __init__(self, reply: Callable[[Request], Reply]) -> None:
        self.reply = reply
        self.requests: list[Request] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept)
        self._accepting.start()

    def _accept(self) -> None:
        count = 0
        while not self._stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            count += 1
            serving = threading.Thread(target=self._serve, args=(connection, count))
            with self._lock:
                self._sockets.append(connection)
                self._threads.append(serving)
            serving.start()

    def _serve(self, connection: socket.socket, number: int) -> None:
        buffer = b""
        served = 0
        with connection:
            while True:
                try:
                    while b"\r\n\r\n" not in buffer:
                        chunk = connection.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    method, path, _ = lines[0].split(" ", 2)
                    headers = {}
                    for line in lines[1:]:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                    length = int(headers.get("content-length", "0"))
                    while len(buffer) < length:
                        chunk = connection.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                except OSError:
                    return  # closed by `close()`
                body, buffer = buffer[:length], buffer[length:]
                served += 1
                request = Request(number, served, method, path, headers, body)
                with self._lock:
                    self.requests.append(request)
                reply = self.reply(request)
                if reply == RESET:
                    linger = struct.pack("ii", 1, 0)  # on, 0 s: close() sends a reset
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    return
                if reply == CLOSE:
                    return
                assert isinstance(reply, bytes)
                connection.sendall(reply)
                if b"\r\nconnection: close\r\n" in reply.split(b"\r\n\r\n", 1)[0] + b"\r\n":
                    return

    def close(self) -> None:
        self._stopping.set()
        self._accepting.join()
        self.listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for connection in sockets:
            with contextlib.suppress(OSError):  # unless already closed
                connection.shutdown(socket.SHUT_RDWR)
        for serving in threads:
            serving.join()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
