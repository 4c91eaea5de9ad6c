"""A loopback TCP proxy that injects network faults between a client and a real server
(or between the server and PostgreSQL): cut every connection, refuse new ones, or lose
the answer to a request after the server has handled it. Bytes are never altered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.down = False
        """New connections are closed at once, as if nothing listened."""
        self.lose_answers = 0
        """How many connections, from the next one on, lose what the server answers."""
        self.sent: list[bytes] = []
        """Everything clients sent, one entry per read (to look for headers)."""
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Close every open connection (both sides)."""
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        losing = self.lose_answers > 0
        if losing:
            self.lose_answers -= 1
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer, record=True),
            self._pipe(up_reader, writer, lose=losing),
            return_exceptions=True,
        )
        for side in (writer, up_writer):
            self._links.discard(side)
            side.transport.abort()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        record: bool = False,
        lose: bool = False,
    ) -> None:
        while data := await reader.read(65536):
            if record:
                self.sent.append(data)
            if lose:
                # The server has answered: the client never sees it, and its connection
                # drops, as on a network failure after the commit.
                writer.transport.abort()
                return
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()


@contextlib.asynccontextmanager
async def proxy_to(port: int) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(port).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
