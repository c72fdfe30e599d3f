"""A diskcache ``Disk`` that stores text inline and never unpickles.

diskcache's own ``Disk`` pickles any value that is not str/bytes/int/float and, on read,
unpickles every row whose ``mode`` column says pickle, whatever wrote it. A cache directory
is a file anyone with write access to it can edit, and unpickling runs code. This ``Disk``:

- writes ``str`` keys and ``str`` values only, always inline in SQLite (``MODE_RAW``),
  never as side files and never pickled;
- reads back only what it writes: a row in any other mode (pickle, binary, text file) or
  with a non-text value raises ``UnsafeEntry`` and is never decoded;
- never deletes files: it creates none, so a filename in a row is a tampered one and could
  point anywhere (``../../home/...``).

Used by ``DiskCacheBackend`` (its values are JSON text); it depends on nothing but
diskcache, so any diskcache-backed store can share it. Imported when a backend is built.
"""

from __future__ import annotations

from typing import Any

import diskcache
from diskcache.core import MODE_RAW, UNKNOWN

__all__ = ["JsonDisk", "UnsafeEntry"]


class UnsafeEntry(ValueError):
    """A row this Disk did not write (pickle or file mode, or a non-text value)."""


class JsonDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache ships no type hints
    def put(self, key: Any) -> tuple[str, bool]:
        if type(key) is not str:
            raise TypeError(f"keys are str; got a {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> str:
        # called when diskcache iterates keys; a non-raw key column would be a pickle
        if not raw or type(key) is not str:
            raise UnsafeEntry("a key that is not plain text (pickled?)")
        return key

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, None, str]:
        if read or type(value) is not str:
            raise TypeError(f"values are JSON text; got a {type(value).__name__}")
        return 0, MODE_RAW, None, value

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> str:
        if mode != MODE_RAW or filename is not None or type(value) is not str:
            raise UnsafeEntry(
                f"an entry in mode {mode} ({'file' if filename else 'inline'}, "
                f"{type(value).__name__} value) that this store never writes"
            )
        return value

    def remove(self, file_path: str) -> None:
        """Do nothing: this Disk makes no files, so any path in a row is tampered."""
