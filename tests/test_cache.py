"""What a killed writer leaves behind is removed by the next writer, and nothing a live writer needs."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import cache

ROOT = Path(__file__).resolve().parent.parent
STALLED_WRITER = """
import os, sys, time
from pathlib import Path
from harness import cache
os.replace = lambda *args: time.sleep(600)  # stop between writing the temporary file and moving it into place
cache.write_bytes_atomic(Path(sys.argv[1]) / "chunk-00000.safetensors", b"half a chunk")
"""


def test_the_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", STALLED_WRITER, str(tmp_path)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    (orphan,) = tmp_path.glob(".chunk-00000.safetensors.*.tmp")
    cache.write_bytes_atomic(tmp_path / "chunk-00001.safetensors", b"a whole chunk")
    assert not orphan.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chunk-00001.safetensors"]


def _dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def test_only_the_leftovers_of_writers_that_cannot_still_be_writing_are_removed(tmp_path):
    def leftover(host: str, pid: int, kind: str = "tmp", age: float = 0.0) -> Path:
        path = tmp_path / f".result.json.{host}.{pid}.abc123.{kind}"
        path.mkdir() if kind == "partial" else path.write_bytes(b"partial")
        os.utime(path, (time.time() - age, time.time() - age))
        return path

    dead, alive = _dead_pid(), os.getppid()
    gone = [
        leftover(cache.HOST, dead),
        leftover(cache.HOST, dead, "partial"),
        leftover("other_machine", 12, age=2 * cache.ORPHAN_AGE_SECONDS),
    ]
    kept = [leftover(cache.HOST, alive), leftover("other_machine", 12, "partial"), tmp_path / ".hidden.tmp"]
    kept[-1].write_bytes(b"not ours")
    assert sorted(cache.remove_orphans(tmp_path)) == sorted(gone)
    assert all(path.exists() for path in kept)


def test_a_files_hash_is_read_once_while_the_file_is_unchanged(tmp_path, monkeypatch):
    import hashlib

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights" * 10)
    first = cache.file_sha256(path)
    opened = []
    monkeypatch.setattr(
        cache, "open", lambda *args, **kwargs: opened.append(args[0]) or open(*args, **kwargs), raising=False
    )
    assert cache.file_sha256(path) == first and opened == []  # the same inode, size and time: not read again
    path.write_bytes(b"changed" * 11)
    assert cache.file_sha256(path) == hashlib.sha256(b"changed" * 11).hexdigest() and len(opened) == 1


def _hold_the_build_lock(target: str, started: str, seconds: float) -> None:
    with cache.exclusive(Path(target)):
        Path(started).write_text("held")
        time.sleep(seconds)
        (Path(target).parent / "built-by-first").write_text("first")


def test_a_second_builder_waits_for_the_first_and_then_finds_its_entry(tmp_path):
    target, started = tmp_path / "entry", tmp_path / "started"
    first = multiprocessing.get_context("spawn").Process(
        target=_hold_the_build_lock, args=(str(target), str(started), 1.0)
    )
    first.start()
    while not started.exists():
        time.sleep(0.01)
    with cache.exclusive(target):  # blocks until the first process leaves its block
        assert (tmp_path / "built-by-first").read_text() == "first"
    first.join()
    assert first.exitcode == 0
