"""A faster receive path for websocket-client: read the socket in large chunks.

websocket-client reads each frame with one ``select`` and two exact-size ``recv`` calls
(header, then payload), and every syscall gives up the GIL. At 20,000 ticks a second,
with the Redis writer thread wanting the GIL too, that is the feed's bottleneck. Here a
connection's frames are parsed out of 64 KiB reads, and the dispatcher drains every
frame already buffered before it selects again.

Everything else (handshake, ping thread, close handling, callbacks) is websocket-client's
own; only ``frame_buffer.recv`` and the dispatcher are swapped, through the hooks the
library has for them (``create_dispatcher`` and the frame buffer's ``recv`` callable).
TODO: drop this module if websocket-client gains buffered reads.
"""

from __future__ import annotations

import selectors

import websocket
from websocket._dispatcher import Dispatcher
from websocket._exceptions import (
    WebSocketConnectionClosedException,
    WebSocketTimeoutException,
)

CHUNK = 65536


class BufferedReader:
    """Serves websocket-client's exact-size reads out of large socket reads."""

    __slots__ = ("ws", "raw", "buf", "pos")

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.raw = ws.sock
        self.buf = b""
        self.pos = 0

    def pending(self) -> bool:
        if self.pos < len(self.buf):
            return True
        ssl_pending = getattr(self.raw, "pending", None)  # decrypted bytes held by TLS
        return bool(ssl_pending and ssl_pending())

    def recv(self, bufsize: int) -> bytes:
        buf, pos = self.buf, self.pos
        if pos >= len(buf):
            try:
                buf = self.raw.recv(CHUNK)
            except TimeoutError as exc:  # socket.timeout; a partial frame took too long
                raise WebSocketTimeoutException(str(exc) or "timed out") from exc
            except OSError as exc:
                self._closed()
                raise WebSocketConnectionClosedException(str(exc)) from exc
            if not buf:
                self._closed()
                raise WebSocketConnectionClosedException("Connection to remote host was lost.")
            pos = 0
        end = pos + bufsize
        self.buf = buf
        self.pos = end if end < len(buf) else len(buf)
        return buf[pos:end]

    def _closed(self) -> None:
        """What websocket-client's own recv does when the peer is gone."""
        ws = self.ws
        if ws.sock is not None:
            ws.sock.close()
        ws.sock = None
        ws.connected = False


class DrainingDispatcher(Dispatcher):
    """The default dispatcher, except it reads every buffered frame before selecting."""

    def read(self, sock, read_callback, check_callback) -> None:
        app = self.app
        if app.sock is None or app.sock.sock is None:
            return
        reader: BufferedReader | None = getattr(app, "reader", None)
        sel = selectors.DefaultSelector()
        sel.register(app.sock.sock, selectors.EVENT_READ)
        try:
            while app.keep_running:
                if (reader is not None and reader.pending()) or sel.select(self.ping_timeout):
                    if not read_callback():
                        break
                    while reader is not None and reader.pending() and app.keep_running:
                        if not read_callback():
                            return
                check_callback()
        finally:
            sel.close()


class FastWebSocketApp(websocket.WebSocketApp):
    """WebSocketApp with the buffered receive path; call ``install_reader`` in on_open."""

    reader: BufferedReader | None = None

    def create_dispatcher(self, ping_timeout, dispatcher=None, is_ssl=False,
                          handleDisconnect=None):
        if dispatcher:  # a custom event loop: keep the library's own wrapper
            return super().create_dispatcher(ping_timeout, dispatcher, is_ssl,
                                              handleDisconnect)
        return DrainingDispatcher(self, ping_timeout or 10)

    def install_reader(self) -> None:
        """Swap the frame buffer's reads to the buffered reader (after the handshake)."""
        ws = self.sock
        if ws is None or ws.sock is None:
            return
        self.reader = BufferedReader(ws)
        ws.frame_buffer.recv = self.reader.recv


__all__ = ["BufferedReader", "DrainingDispatcher", "FastWebSocketApp"]
