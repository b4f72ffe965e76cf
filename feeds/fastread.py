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
import socket
from collections.abc import Callable

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
        assert ws.sock is not None  # made only after the handshake, on a connected socket
        self.ws = ws
        self.raw: socket.socket = ws.sock
        self.buf = b""
        self.pos = 0

    def pending(self) -> bool:
        if self.pos < len(self.buf):
            return True
        ssl_pending = getattr(self.raw, "pending", None)  # decrypted bytes held by TLS
        return bool(ssl_pending and ssl_pending())

    def take_binary_frames(self, on_frame: Callable[[bytes], object]) -> int:
        """Hand every whole, final, unmasked binary frame at the front of the buffer to
        ``on_frame`` without websocket-client's per-frame work; stop at anything else
        (a control, text or fragmented frame, or a partial one), which the library then
        reads as usual. Returns how many frames were handed over."""
        buf, pos = self.buf, self.pos
        size = len(buf)
        taken = 0
        while pos + 2 <= size:
            if buf[pos] != 0x82:  # FIN + binary, no RSV bits
                break
            length = buf[pos + 1]
            if length < 126:  # also rules out the mask bit (0x80): servers never mask
                start = pos + 2
            elif length == 126:
                if pos + 4 > size:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            else:
                break
            end = start + length
            if end > size:
                break
            pos = end
            self.pos = pos  # before the callback: it may raise, the frame is consumed
            on_frame(buf[start:end])
            taken += 1
        return taken

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
        fast = self._fast_path(reader)
        sel = selectors.DefaultSelector()
        sel.register(app.sock.sock, selectors.EVENT_READ)
        try:
            while app.keep_running:
                if (reader is not None and reader.pending()) or sel.select(self.ping_timeout):
                    if not read_callback():
                        break
                    while reader is not None and reader.pending() and app.keep_running:
                        if fast is not None and fast():
                            continue
                        if not read_callback():
                            return
                check_callback()
        finally:
            sel.close()

    def _fast_path(self, reader: BufferedReader | None) -> Callable[[], int] | None:
        """A callable that passes buffered binary frames straight to ``on_data`` (and
        ``on_message``), as the library's read would, or None when it cannot apply."""
        app = self.app
        ws = app.sock
        if reader is None or ws is None or app.on_cont_message:
            return None
        cont = ws.cont_frame
        callback = app._callback
        on_data, on_message = app.on_data, app.on_message

        def on_frame(data: bytes) -> None:
            if on_data:
                callback(on_data, data, 0x2, True)
            if on_message:
                callback(on_message, data)

        def fast() -> int:
            if cont.recving_frames:  # mid fragmented message: the library's rules apply
                return 0
            return reader.take_binary_frames(on_frame)

        return fast


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
