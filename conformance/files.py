"""Reading a user's file without being trapped by it: ``open_regular`` opens without blocking
(a FIFO with no writer does not wait) and checks the open descriptor, so only a regular file
is read and a FIFO, device, socket or directory is refused at once, saying which it is."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class NotARegularFile(ValueError):
    """``path`` is no regular file; ``kind`` says what it is ("a FIFO", ...)."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(f"{path}: not a regular file ({kind})")
        self.kind = kind


@contextmanager
def open_regular(path: Path | str) -> Iterator[IO[bytes]]:
    """``path`` opened for reading bytes (blocking again once checked), if it is a regular
    file; else ``NotARegularFile``.  ``OSError`` from opening it propagates."""
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX; elsewhere FIFOs are no such trap
    descriptor = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(path, next((name for test, name in _KINDS if test(mode)),
                                             "not a file"))
        if nonblocking:
            os.set_blocking(descriptor, True)
        handle = os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
    with handle:
        yield handle
