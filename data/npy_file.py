"""`NpyFile`: a 1-D .npy file read by position (``os.pread``), never mapped into the process.

Why not ``np.load(mmap_mode="r")``: a read fault on a mapped file maps whole page-cache folios
(and the kernel's fault-around neighbours) into the process, so they count in its RSS. On the
899k-pair stand-in, one batch of a few hundred random sentences made 167 MB of a process's RSS
file-backed; at 4.5M pairs 150 random rows made 220 MB. A positional read copies only the bytes
asked for. The file still lives once in the OS page cache, shared by every cell and rank of a
node, and no Python list of the corpus exists in any process.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np


class NpyFileError(ValueError):
    """A .npy file that cannot be read as a 1-D array (corrupt, truncated, wrong layout)."""


def _read_header(path: Path) -> tuple[np.dtype, int, int]:
    """(dtype, length, byte offset of the data) of the 1-D .npy file at `path`."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise NpyFileError(f"{path}: .npy format version {version} is not supported")
            data_offset = f.tell()  # one dimension: C and Fortran order are the same bytes
    except NpyFileError:
        raise
    except (ValueError, OSError) as err:
        raise NpyFileError(f"{path}: not a readable .npy file ({err})") from err
    if len(shape) != 1 or dtype.hasobject:
        raise NpyFileError(f"{path}: expected a 1-D numeric array, found shape {shape} "
                           f"of {dtype}")
    expected = data_offset + shape[0] * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise NpyFileError(f"{path}: truncated ({size} bytes, the header promises {expected})")
    return dtype, int(shape[0]), data_offset


class NpyFile:
    """Elements and ranges of a 1-D .npy array, read from the file on demand.

    The descriptor is opened on the first read. A pickled copy (spawned DataLoader workers) opens
    its own; a forked one shares the inherited descriptor, which is safe because ``pread`` does
    not move the file position.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.dtype, self._len, self._data_offset = _read_header(self.path)
        self._fd: int | None = None

    def __len__(self) -> int:
        return self._len

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def read(self, start: int, stop: int) -> np.ndarray:
        """Elements ``start:stop`` (0 <= start <= stop <= len) as a new array."""
        if not 0 <= start <= stop <= self._len:
            raise IndexError(f"{self.path}: range {start}:{stop} outside 0:{self._len}")
        size = (stop - start) * self.dtype.itemsize
        data = os.pread(self._descriptor(), size,
                        self._data_offset + start * self.dtype.itemsize)
        if len(data) != size:
            raise NpyFileError(f"{self.path}: read {len(data)} of {size} bytes at element "
                               f"{start} (the file shrank?)")
        return np.frombuffer(data, dtype=self.dtype)

    def read_all(self) -> np.ndarray:
        """The whole array, read into memory."""
        return self.read(0, self._len).copy()  # frombuffer of bytes is read-only

    def __getitem__(self, i: int) -> Any:
        i = int(i)
        if i < 0:
            i += self._len
        return self.read(i, i + 1)[0]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError, TypeError):  # interpreter shutdown
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None}
