"""A lean HTTP/1.1 load client for the benchmarks: keep-alive connections on asyncio streams.

The load generator shares the machine's two cores with what it measures: httpx spent about 10 ms
of CPU per submission there (43% of a core at 43 requests/s in the pipeline benchmark), this about a
tenth of it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

TIMEOUT = 5.0


def post_json(host: str, port: int, path: str, body: Any) -> bytes:
    """The bytes of a POST of ``body`` as JSON (``bytes`` are sent as they are)."""
    payload = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


class Connection:
    """One keep-alive connection; reconnects after an error or a ``Connection: close``."""

    def __init__(self, host: str, port: int, *, timeout: float = TIMEOUT) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request; (status, body), or (0, b"") when the connection failed or timed out.
        A kept-alive connection the server closed meanwhile (idle timeout) is opened again and the
        request sent once more: the server read nothing of it."""
        for attempt in (1, 2):
            reused = self._w is not None
            try:
                return await self._exchange(raw)
            except asyncio.IncompleteReadError as exc:
                self.close()
                if attempt == 2 or not reused or exc.partial:
                    return 0, b""
            except (asyncio.TimeoutError, asyncio.LimitOverrunError, ConnectionError, OSError):
                self.close()
                return 0, b""
        return 0, b""

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        if self._w is None:
            self._r, self._w = await asyncio.open_connection(self.host, self.port)
        self._w.write(raw)
        head = await asyncio.wait_for(self._r.readuntil(b"\r\n\r\n"), self.timeout)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(self._r.readexactly(length), self.timeout) if length else b""
        if b"connection: close" in head.lower():
            self.close()
        return int(head.split(b" ", 2)[1]), body

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
        self._r = self._w = None
