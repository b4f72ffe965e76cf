"""The buffered receive path: whole binary frames go straight to the callback."""

from __future__ import annotations

import socket

import pytest
import websocket
from websocket._exceptions import WebSocketConnectionClosedException

from feeds.fastread import BufferedReader
from simulator.stream import ws_frame


class _Socket:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0)[:size] if self.chunks else b""

    def close(self) -> None:
        pass


def reader_with(*chunks: bytes) -> BufferedReader:
    ws = websocket.WebSocket()
    ws.sock = _Socket(*chunks)  # type: ignore[assignment]
    reader = BufferedReader(ws)
    reader.recv(0)  # loads the first chunk, consumes nothing
    return reader


def test_whole_binary_frames_are_handed_over_in_order_up_to_a_ping():
    big = bytes(range(200))  # a two-byte length
    data = ws_frame(b"one") + ws_frame(big) + ws_frame(b"", opcode=0x9) + ws_frame(b"two")
    reader = reader_with(data)
    got: list[bytes] = []

    assert reader.take_binary_frames(got.append) == 2
    assert got == [b"one", big]
    assert reader.buf[reader.pos:] == ws_frame(b"", opcode=0x9) + ws_frame(b"two")


def test_a_partial_frame_is_left_for_the_library_to_finish():
    frame = ws_frame(b"x" * 60)
    reader = reader_with(ws_frame(b"a") + frame[:30], frame[30:])
    got: list[bytes] = []

    assert reader.take_binary_frames(got.append) == 1
    assert got == [b"a"]
    assert reader.recv(2) == frame[:2]  # the library's exact-size reads carry on from here


@pytest.mark.parametrize("frame", [
    ws_frame(b"text", opcode=0x1),
    bytes((0x02, 3)) + b"abc",  # not final: a fragment
    bytes((0x82, 0x83)) + b"mask" + b"abc",  # masked: no server sends that
    bytes((0x82, 127)) + (3).to_bytes(8, "big") + b"abc",  # 64-bit length
])
def test_anything_but_a_plain_binary_frame_stops_the_fast_path(frame):
    reader = reader_with(frame)
    got: list[bytes] = []

    assert reader.take_binary_frames(got.append) == 0
    assert got == [] and reader.pos == 0


def test_a_callback_that_raises_still_consumes_its_frame():
    reader = reader_with(ws_frame(b"bad") + ws_frame(b"next"))

    def boom(data: bytes) -> None:
        raise ValueError(data)

    with pytest.raises(ValueError):
        reader.take_binary_frames(boom)
    got: list[bytes] = []
    assert reader.take_binary_frames(got.append) == 1
    assert got == [b"next"]


def test_a_closed_peer_is_reported_as_a_closed_connection():
    left, right = socket.socketpair()
    ws = websocket.WebSocket()
    ws.sock = left
    reader = BufferedReader(ws)
    right.close()

    with pytest.raises(WebSocketConnectionClosedException):
        reader.recv(2)
    assert ws.sock is None and not ws.connected
