"""data.npy_file.NpyFile: positional reads of a 1-D .npy array equal numpy's own reading; a bad
file is named; copies made by pickling and by fork read the same elements."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest

from data.npy_file import NpyFile, NpyFileError


def _saved(tmp_path: Path, array: np.ndarray, *, version: tuple[int, int] | None = None) -> Path:
    path = tmp_path / f"a-{array.dtype}-{len(array)}-{version}.npy"
    if version is None:
        np.save(path, array)
    else:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, array, version=version)
    return path


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.float32])
@pytest.mark.parametrize("version", [None, (1, 0), (2, 0)])
def test_reads_equal_numpy(tmp_path: Path, dtype: type, version: tuple[int, int] | None) -> None:
    array = np.random.default_rng(0).integers(0, 250, 1001).astype(dtype)
    f = NpyFile(_saved(tmp_path, array, version=version))
    assert len(f) == 1001 and f.dtype == array.dtype
    for start, stop in ((0, 0), (0, 1), (5, 17), (990, 1001), (0, 1001)):
        got = f.read(start, stop)
        assert got.dtype == array.dtype and got.tolist() == array[start:stop].tolist()
    assert f[0] == array[0] and f[-1] == array[-1] and f[500] == array[500]
    whole = f.read_all()
    assert whole.tolist() == array.tolist() and whole.flags.writeable


def test_an_empty_array_reads_as_empty(tmp_path: Path) -> None:
    f = NpyFile(_saved(tmp_path, np.zeros(0, dtype=np.int64)))
    assert len(f) == 0 and f.read_all().tolist() == []


def test_out_of_range_reads_raise(tmp_path: Path) -> None:
    f = NpyFile(_saved(tmp_path, np.arange(10)))
    for start, stop in ((-1, 2), (3, 2), (0, 11)):
        with pytest.raises(IndexError, match="outside 0:10"):
            f.read(start, stop)


def test_bad_files_are_named(tmp_path: Path) -> None:
    not_npy = tmp_path / "not.npy"
    not_npy.write_bytes(b"this is not an array")
    with pytest.raises(NpyFileError, match=r"not\.npy: not a readable \.npy file"):
        NpyFile(not_npy)
    truncated = _saved(tmp_path, np.arange(100, dtype=np.int64))
    truncated.write_bytes(truncated.read_bytes()[:-8])
    with pytest.raises(NpyFileError, match="truncated"):
        NpyFile(truncated)
    square = tmp_path / "square.npy"
    np.save(square, np.zeros((3, 3)))
    with pytest.raises(NpyFileError, match=r"square\.npy: expected a 1-D numeric array"):
        NpyFile(square)
    with pytest.raises(NpyFileError, match="not a readable"):
        NpyFile(tmp_path / "missing.npy")


def test_a_file_that_shrinks_after_opening_is_named(tmp_path: Path) -> None:
    path = _saved(tmp_path, np.arange(100, dtype=np.int64))
    f = NpyFile(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(NpyFileError, match="the file shrank"):
        f.read(50, 100)


def _read_in_child(f: NpyFile, queue: multiprocessing.Queue) -> None:
    queue.put(f.read(3, 8).tolist())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_copies_in_other_processes_read_the_same(tmp_path: Path, method: str) -> None:
    array = np.arange(50, dtype=np.int32) * 3
    f = NpyFile(_saved(tmp_path, array))
    f.read(0, 1)  # the parent's descriptor is open before the copy is made
    clone = pickle.loads(pickle.dumps(f))
    assert clone._fd is None and clone.read(3, 8).tolist() == array[3:8].tolist()
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(f, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and got == array[3:8].tolist()
    assert f.read(3, 8).tolist() == array[3:8].tolist()  # the child closing its copy is harmless
