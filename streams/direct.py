"""One websocket frame built once per event, written as is to every client's socket.

Through ASGI each message to each client is framed again (encode the text, build the header,
join the buffers) and passes four layers of ``send`` wrappers: at 1,000 clients that repeats
the same work a thousand times per event and was two thirds of the API's CPU for the stream.
A server frame is not masked, so without compression the bytes are the same for every client:
the hub builds them once (``frame``) and writes them straight to each caught-up client's socket
(``DirectWriter.try_write``: no task switch per client either), or queues them for the client's
session when the socket's buffer is full, respecting the server's flow control.

Only for uvicorn's websockets-sansio connection (the default with ``uvicorn[standard]``) without
permessage-deflate; ``DirectWriter.of`` returns None otherwise and the session uses plain ASGI
``send``. ``tests/integration/test_stream.py`` checks the direct path is what the API uses, so an
upgrade that changes uvicorn's connection object is noticed rather than silently slower.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, State


def frame(text: str) -> bytes:
    """A server-to-client text frame (unmasked, uncompressed, not fragmented)."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class DirectWriter:
    """Writes pre-built frames to one uvicorn websockets-sansio connection."""

    __slots__ = ("_proto",)

    def __init__(self, proto: Any) -> None:
        self._proto = proto

    @classmethod
    def of(cls, asgi_send: Any) -> DirectWriter | None:
        """For the server's own ASGI ``send`` of a websocket connection; None where frames
        cannot be written as is (another server, or an extension such as compression)."""
        proto = getattr(asgi_send, "__self__", None)
        conn = getattr(proto, "conn", None)
        if (
            not isinstance(conn, Protocol)
            or conn.extensions
            or not isinstance(getattr(proto, "writable", None), asyncio.Event)
            or not hasattr(proto, "transport")
            or not isinstance(getattr(proto, "close_sent", None), bool)
            or not isinstance(getattr(proto, "disconnected", None), bool)
        ):
            return None
        return cls(proto)

    def try_write(self, data: bytes) -> bool:
        """Write one frame if the socket takes it now (open, buffer not full); else False."""
        p = self._proto
        if (
            not p.writable.is_set()
            or p.disconnected
            or p.close_sent
            or p.conn.state is not State.OPEN
            or p.transport.is_closing()
        ):
            return False
        p.transport.write(data)
        return True

    async def write(self, data: bytes) -> None:
        """Write one frame; waits while the socket's buffer is full (as uvicorn's send does).
        Raises ConnectionResetError once the connection is closing or gone."""
        p = self._proto
        if not p.writable.is_set():
            await p.writable.wait()
        if p.disconnected or p.close_sent or p.conn.state is not State.OPEN:
            raise ConnectionResetError("websocket closed")
        transport = p.transport
        if transport.is_closing():
            raise ConnectionResetError("websocket closed")
        transport.write(data)
