"""The digest and content checks that run in a thread beside a stream being stored."""

import hashlib
import os
import threading

import pytest

from shared.datasets import content
from shared.datasets import checks
from shared.datasets.checks import StreamCheck


def test_digest_size_and_records_of_a_reused_buffer():
    """The reader's buffer changes after each chunk: the thread must see what was sent, not what follows."""
    lines = [f"line {i}\n".encode() for i in range(1_000_000)]  # several pieces
    data = b"".join(lines)
    buffer = bytearray(4096)
    check = StreamCheck(content.validator_for("text/plain", "a.txt"))

    def chunks():
        for i in range(0, len(data), 4096):
            piece = data[i:i + 4096]
            buffer[:len(piece)] = piece
            yield memoryview(buffer)[:len(piece)]

    passed = b"".join(bytes(c) for c in check.tee(chunks()))
    check.finish()
    assert passed == data
    assert check.facts() == {"size": len(data), "digest": hashlib.sha256(data).hexdigest(),
                             "records": 1_000_000, "error": None}


def test_bad_content_is_a_verdict_not_an_exception():
    check = StreamCheck(content.validator_for("text/plain", "a.txt"))
    for _ in check.tee([b"fine\n", b"not\0fine\n", b"more\n"]):
        pass
    check.finish()
    assert check.error and "NUL" in check.error
    assert check.records is None
    assert check.digest == hashlib.sha256(b"fine\nnot\0fine\nmore\n").hexdigest()


def test_an_empty_stream_is_refused_and_binary_has_no_records():
    assert "empty" in StreamCheck(content.validator_for("text/plain", "a.txt")).finish().error
    blob = os.urandom(10_000)
    check = StreamCheck(content.validator_for("application/octet-stream", "a.bin"))
    list(check.tee([blob]))
    assert check.finish().facts() == {"size": 10_000, "digest": hashlib.sha256(blob).hexdigest(),
                                      "records": None, "error": None}


def test_a_failing_stream_stops_the_thread():
    check = StreamCheck()
    before = threading.active_count()

    def broken():
        yield b"a" * 10
        raise OSError("the disk went away")

    with pytest.raises(OSError):
        for _ in check.tee(broken()):
            pass
    assert threading.active_count() == before - 1
    check.abandon()  # again: harmless


def test_a_bug_in_a_check_surfaces_in_the_callers_thread():
    class Broken:
        records = None

        def feed(self, piece):
            raise ZeroDivisionError("a bug")

        def finish(self):
            pass

    check = StreamCheck(Broken())
    chunk = b"x" * (1 << 20)
    for _ in check.tee([chunk] * 4 * (checks.PIECES + 2)):  # more pieces than exist: never blocks
        pass
    with pytest.raises(ZeroDivisionError):
        check.finish()
