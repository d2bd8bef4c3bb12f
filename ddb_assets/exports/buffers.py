"""Reusable byte buffers for the tens of megabytes of JSON each data file decompresses to.

A fresh ``bytes`` of that size comes from ``mmap`` (it is above glibc's largest mmap threshold),
so each new file would first page-fault every 4 KiB of it in, with the kernel zeroing each page:
measured at a fifth of the conversion's CPU time. A worker instead keeps one ``ByteArena``, sized
once, that every piece of every file is decompressed into, already paged in.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Union

import pyarrow as pa
from isal import isal_zlib

from ddb_assets.exports.errors import ExportFormatError, OversizedLine

GZIP_WBITS = 16 + isal_zlib.MAX_WBITS
_CHUNK = 4 << 20  # decompressed per call: small enough to come from the heap, not mmap
# A DynamoDB item is at most 400 KB as DynamoDB counts it, and its export line is longer. The worst
# case known is an item of tiny elements: a list of NULLs costs 2 bytes an element in the item and
# 14 in the line ({"NULL":true},), a map whose names are control characters 3 and 23
# ("\u0001":{"NULL":true},): 7.7x, 3.1 MB. A line past 8 MiB is no export line but a damaged file
# or a decompression bomb (one 2 GiB line took 6.7 GB before it failed), and is refused before it
# is buffered whole.
MAX_LINE_BYTES = 8 << 20
_NON_BLANK = re.compile(rb"[^ \t\r\n]")


class ByteArena:
    """A buffer written from the start for each file; its capacity is kept for the next one."""

    def __init__(self) -> None:
        self._data = bytearray()
        self.size = 0

    def clear(self, expected: int = 0) -> None:
        """Start over, with room for ``expected`` bytes (one allocation instead of doublings)."""
        self.size = 0
        if expected > len(self._data):
            self._data = bytearray(expected)  # the previous one lives on while views of it do

    def append(self, chunk: bytes | memoryview) -> None:
        end = self.size + len(chunk)
        if end > len(self._data):
            grown = bytearray(max(end, len(self._data) + len(self._data) // 4))
            grown[:self.size] = memoryview(self._data)[:self.size]
            self._data = grown
        self._data[self.size:end] = chunk  # same-length slice assignment: a copy, no resize
        self.size = end

    def text(self, size: int | None = None) -> "Text":
        return Text(self._data, self.size if size is None else size)

    def keep_from(self, start: int) -> None:
        """Drop the first ``start`` bytes, moving the rest to the front."""
        tail = bytes(memoryview(self._data)[start:self.size])
        self._data[:len(tail)] = tail
        self.size = len(tail)

    def release(self) -> None:
        self._data, self.size = bytearray(), 0


class Text:
    """The first ``size`` bytes of a buffer, with the bytes methods we scan by; writable in place
    (``overwrite``) when the buffer is a ``bytearray``."""

    __slots__ = ("_data", "size")

    def __init__(self, data: bytes | bytearray, size: int | None = None):
        self._data = data
        self.size = len(data) if size is None else size

    @classmethod
    def of(cls, raw: "bytes | Text") -> "Text":
        return raw if isinstance(raw, Text) else cls(raw)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice) -> bytes:
        start, stop, _ = key.indices(self.size)
        return bytes(memoryview(self._data)[start:stop])

    def __bytes__(self) -> bytes:
        return self[:]

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        return self._data.find(sub, start, self.size if end is None else min(end, self.size))

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        return self._data.rfind(sub, start, self.size if end is None else min(end, self.size))

    def count(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        return self._data.count(sub, start, self.size if end is None else min(end, self.size))

    def translate(self, table: bytes | None, delete: bytes) -> bytes:
        """``bytes.translate`` of the text (see ``translate_view``)."""
        return translate_view(self.view(), table, delete)

    def overwrite(self, start: int, replacement: bytes) -> None:
        """Write over bytes in place (the text must be writable, i.e. not ``bytes``)."""
        self._data[start:start + len(replacement)] = replacement

    def writable(self) -> "Text":
        """This text if it can be written in place, else a writable copy."""
        return self if isinstance(self._data, bytearray) else Text(bytearray(self.view()), self.size)

    def is_blank(self) -> bool:
        return _NON_BLANK.search(self.view()) is None

    def view(self) -> memoryview:
        return memoryview(self._data)[:self.size]

    def buffer(self) -> pa.Buffer:
        """Zero-copy Arrow buffer over the text (valid until the arena is written again)."""
        return pa.py_buffer(self.view())


def translate_view(view: memoryview, table: bytes | None, delete: bytes) -> bytes:
    """``bytes.translate`` of a buffer's bytes, read a chunk at a time: no copy of the whole of
    them (a fresh one would be page-faulted in: as long as the translation itself)."""
    return b"".join(bytes(view[start:start + _CHUNK]).translate(table, delete) for start in range(0, len(view), _CHUNK))


# A whole gzip file, or its chunks as they are read (see exports.reader.VerifiedStream).
Compressed = Union[bytes, memoryview, Iterable[Union[bytes, memoryview]]]


def gunzip_into(data: Compressed, arena: ByteArena, *, obj: str, max_line_bytes: int = MAX_LINE_BYTES) -> Text:
    """Decompress a whole (possibly multi-member) gzip file into ``arena``; errors name ``obj``.

    Raises OversizedLine for a line longer than ``max_line_bytes`` (see ``gunzip_pieces``).
    """
    # ISIZE is the file's own word (a bomb's says gigabytes): reserve no more than a plausible
    # ratio allows (exports compress 5-20x); a file beyond it grows the arena as it comes.
    arena.clear(min(_isize(data), 64 * len(data)) if isinstance(data, (bytes, bytearray, memoryview)) else 0)
    bound = _LineBound(max_line_bytes, data, obj)
    for chunk in _gunzip_chunks(data, obj, bound.chunk_bytes):
        bound.check(chunk)
        arena.append(chunk)
    return arena.text()


def gunzip_pieces(data: Compressed, arena: ByteArena, *, obj: str, piece_bytes: int,
                  max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[Text, int]]:
    """Decompress a gzip file a piece at a time: (text, offset in the decompressed file) pairs.

    ``data`` is the file's bytes or an iterable of its chunks (read as they are needed). Each piece
    holds at most ``piece_bytes`` (unless one line is longer) and ends at a line end, so
    memory follows the piece size and not the file size, however skewed the files. A piece is
    valid until the next one is asked for: they share ``arena``.

    A line longer than ``max_line_bytes`` (without its newline) raises OversizedLine as soon as
    that many of its bytes have arrived, so memory stays under ``piece_bytes + max_line_bytes +``
    4 MiB whatever the file holds. Its line number is counted by reading the file again up to the
    line (``data`` itself when it is bytes, ``data.reopen()`` when it has that method, else none).
    """
    hint = _isize(data)
    arena.clear(min(hint, piece_bytes + _CHUNK) if hint else piece_bytes + _CHUNK)
    offset = 0
    bound = _LineBound(max_line_bytes, data, obj)
    for chunk in _gunzip_chunks(data, obj, bound.chunk_bytes):
        bound.check(chunk)
        arena.append(chunk)
        while arena.size >= piece_bytes:
            text = arena.text()
            # the last line end within the piece size, else (one very long line) the first after it
            cut = text.rfind(b"\n", 0, piece_bytes) + 1 or text.find(b"\n", piece_bytes) + 1
            if not cut:
                break  # a line longer than what has arrived: wait for more
            yield arena.text(cut), offset
            offset += cut
            arena.keep_from(cut)
    if arena.size:
        yield arena.text(), offset


class _LineBound:
    """Watches decompressed chunks as they pass and refuses the first line longer than ``limit``.

    With chunks of at most ``limit`` bytes (``chunk_bytes``), a longer line always spans a chunk
    end, so one ``find`` and one ``rfind`` per chunk see every line: no pass over the bytes.
    """

    def __init__(self, limit: int, data: Compressed, obj: str):
        if limit < 1:
            raise ValueError(f"max_line_bytes must be positive, not {limit}")
        self.limit, self.data, self.obj = limit, data, obj
        self.chunk_bytes = min(_CHUNK, limit)
        self.passed = 0  # decompressed bytes seen
        self.line_start = 0  # offset of the line still open at the end of them

    def check(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if (first if first >= 0 else len(chunk)) + self.passed - self.line_start > self.limit:
            self._refuse()
        if first >= 0:
            self.line_start = self.passed + chunk.rfind(b"\n") + 1
        self.passed += len(chunk)

    def _refuse(self) -> None:
        raise OversizedLine(self.obj, f"line longer than {self.limit:,} bytes, which no DynamoDB item (400 KB at "
                                      "most) needs: a damaged file or a decompression bomb; not read further",
                            line=_line_number(self.data, self.line_start, self.obj))


def _line_number(data: Compressed, offset: int, obj: str) -> int | None:
    """The 1-based number of the line starting at ``offset``, from a second read of the file."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return count_lines_before(data, offset, obj=obj) + 1
    reopen = getattr(data, "reopen", None)
    if reopen is None:
        return None  # a one-time stream: the bytes before the line are gone
    again = reopen()
    try:
        return count_lines_before(again, offset, obj=obj) + 1
    finally:
        getattr(again, "close", lambda: None)()


def _isize(data: Compressed) -> int:
    """The gzip trailer's ISIZE, the (last member's) uncompressed size: a hint for reserving.
    0 when the data comes as a stream of chunks (the trailer is not read yet)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return 0
    return int.from_bytes(bytes(data[-4:]), "little") if len(data) >= 18 else 0


def _gunzip_chunks(data: Compressed, obj: str, chunk_bytes: int = _CHUNK) -> Iterator[bytes]:
    """Decompressed chunks of at most ``chunk_bytes``, member after member."""
    source = iter([data]) if isinstance(data, (bytes, bytearray, memoryview)) else iter(data)
    decompressor = isal_zlib.decompressobj(wbits=GZIP_WBITS)
    pending: bytes | memoryview = b""
    try:
        while True:
            if decompressor.eof:
                pending = decompressor.unused_data or next(source, b"")
                if not pending:
                    return
                if len(pending) < 2:  # the next member's magic may straddle two chunks
                    pending = bytes(pending) + bytes(next(source, b""))
                if bytes(pending[:2]) != b"\x1f\x8b":
                    if not bytes(pending).strip(b"\x00") and all(not bytes(c).strip(b"\x00") for c in source):
                        return  # zero padding after the last member, as gzip(1) accepts
                    raise ExportFormatError(obj, "not a valid gzip file (data after the last gzip member)")
                decompressor = isal_zlib.decompressobj(wbits=GZIP_WBITS)
            if not pending:
                following = next(source, None)
                if following is None:  # the input is over: what the decompressor still holds
                    while not decompressor.eof:
                        chunk = decompressor.decompress(b"", chunk_bytes)
                        if not chunk:
                            raise ExportFormatError(obj, "truncated gzip: the file ends before the "
                                                         "end-of-stream marker")
                        yield chunk
                    continue
                pending = following
            chunk = decompressor.decompress(pending, chunk_bytes)
            pending = decompressor.unconsumed_tail
            if chunk:
                yield chunk
    except isal_zlib.error as exc:
        raise ExportFormatError(obj, f"not a valid gzip file ({exc})") from None


def count_lines_before(data: Compressed, offset: int, *, obj: str) -> int:
    """Newlines in the first ``offset`` decompressed bytes (error path: to number lines in a file)."""
    count, seen = 0, 0
    for chunk in _gunzip_chunks(data, obj):
        take = min(len(chunk), offset - seen)
        count += chunk.count(b"\n", 0, take)
        seen += take
        if seen >= offset:
            break
    return count
