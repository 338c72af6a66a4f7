"""msgpack, read as data: the subset flax.serialization writes, and the rest of the format for robustness.

``decode_msgpack(data, ext_hook)`` returns the one value ``data`` holds (maps -> dict, arrays -> list, str, bytes,
numbers, None, booleans); extension values go to ``ext_hook(code, payload, start)`` (``bizoo convert-bigs`` turns
flax's arrays into tensors there), and without one they are an error. No code runs on load (no pickle), nesting is
bounded (``MAX_DEPTH``) and every length is checked against the bytes left: a truncated, malformed or trailing-byte
input is a ``MsgpackError`` (a ``ValueError``) naming the byte offset.
"""

from __future__ import annotations

import struct


class MsgpackError(ValueError):
    """Bytes that are not one well-formed msgpack value."""


MAX_DEPTH = 64


class _MsgpackReader:
    """A msgpack decoder over ``data``: maps -> dict, arrays -> list, str -> str, bin -> bytes; extension types go
    to ``ext_hook(code, payload)`` (without one they are an error)."""

    def __init__(self, data: bytes, ext_hook=None):
        self.data = memoryview(data)
        self.pos = 0
        self.ext_hook = ext_hook

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise MsgpackError(
                f"the data ends at byte {len(self.data)} inside a value that needs {n} bytes from byte {self.pos} "
                "(truncated?)"
            )
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def sint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big", signed=True)

    def count(self, n: int, what: str) -> int:
        """A container length, checked against the bytes left (every element takes at least one byte)."""
        left = len(self.data) - self.pos
        if n > left:
            raise MsgpackError(f"{what} of {n} elements at byte {self.pos} but only {left} bytes left (truncated?)")
        return n

    def text(self, n: int) -> str:
        start = self.pos
        try:
            return str(self.take(n), "utf-8")
        except UnicodeDecodeError as err:
            raise MsgpackError(f"the string at byte {start} is not UTF-8: {err}") from None

    def value(self, depth: int = 0):
        if depth > MAX_DEPTH:
            raise MsgpackError(f"values nested deeper than {MAX_DEPTH} levels at byte {self.pos}")
        start = self.pos
        tag = self.take(1)[0]
        if tag <= 0x7F:  # positive fixint
            return tag
        if tag >= 0xE0:  # negative fixint
            return tag - 0x100
        if tag <= 0x8F:
            return self.map(tag & 0x0F, depth)
        if tag <= 0x9F:
            return self.array(tag & 0x0F, depth)
        if tag <= 0xBF:
            return self.text(tag & 0x1F)
        if tag == 0xC0:
            return None
        if tag in (0xC2, 0xC3):
            return tag == 0xC3
        if tag in (0xC4, 0xC5, 0xC6):  # bin 8/16/32
            return bytes(self.take(self.uint(1 << (tag - 0xC4))))
        if tag in (0xC7, 0xC8, 0xC9):  # ext 8/16/32
            size = self.uint(1 << (tag - 0xC7))
            code = self.sint(1)
            return self.ext(code, self.take(size), start)
        if tag == 0xCA:
            return struct.unpack(">f", self.take(4))[0]
        if tag == 0xCB:
            return struct.unpack(">d", self.take(8))[0]
        if 0xCC <= tag <= 0xCF:  # uint 8/16/32/64
            return self.uint(1 << (tag - 0xCC))
        if 0xD0 <= tag <= 0xD3:  # int 8/16/32/64
            return self.sint(1 << (tag - 0xD0))
        if 0xD4 <= tag <= 0xD8:  # fixext 1/2/4/8/16
            code = self.sint(1)
            return self.ext(code, self.take(1 << (tag - 0xD4)), start)
        if 0xD9 <= tag <= 0xDB:  # str 8/16/32
            return self.text(self.uint(1 << (tag - 0xD9)))
        if tag in (0xDC, 0xDD):  # array 16/32
            return self.array(self.uint(2 if tag == 0xDC else 4), depth)
        if tag in (0xDE, 0xDF):  # map 16/32
            return self.map(self.uint(2 if tag == 0xDE else 4), depth)
        raise MsgpackError(f"byte 0x{tag:02x} at byte {start} starts no msgpack value")

    def array(self, n: int, depth: int) -> list:
        return [self.value(depth + 1) for _ in range(self.count(n, "an array"))]

    def map(self, n: int, depth: int) -> dict:
        out = {}
        for _ in range(self.count(n, "a map")):
            at = self.pos
            key = self.value(depth + 1)
            if not isinstance(key, (str, int, bytes, float, bool, type(None))):
                raise MsgpackError(f"the map key at byte {at} is a {type(key).__name__}, not a scalar")
            if key in out:
                raise MsgpackError(f"the map key {key!r} at byte {at} repeats a key of the same map")
            out[key] = self.value(depth + 1)
        return out

    def ext(self, code: int, payload: memoryview, start: int):
        if self.ext_hook is None:
            raise MsgpackError(f"an extension value (type {code}) at byte {start}, where none is allowed")
        return self.ext_hook(code, payload, start)


def decode_msgpack(data: bytes, ext_hook=None):
    """The one msgpack value ``data`` holds; ``MsgpackError`` for truncated, malformed or trailing bytes."""
    reader = _MsgpackReader(data, ext_hook)
    value = reader.value()
    if reader.pos != len(reader.data):
        raise MsgpackError(f"{len(reader.data) - reader.pos} bytes follow the value that ends at byte {reader.pos}")
    return value
