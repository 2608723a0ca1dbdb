"""Where the harness keeps what it builds, and how it writes without leaving partial files.

Every write goes to a temporary sibling first and is moved into place with
``os.replace``; a directory entry counts as present only once its completion
marker exists, so a killed build is a cache miss, never half a result.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import BadInputError

COMPLETE_MARKER = "COMPLETE"


def cache_root() -> Path:
    """The harness cache: ``$HARNESS_CACHE`` or ``~/.cache/layerwise-sft-harness``."""
    configured = os.environ.get("HARNESS_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "layerwise-sft-harness"


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable payload, independent of key order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read once per process while the file keeps its inode, size and modification
    time (the weights of a 7B model are 14 GB: a profile asks for their hash more than once)."""
    status = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), status.st_ino, status.st_size, status.st_mtime_ns, chunk_bytes)


@functools.lru_cache(maxsize=512)
def _file_sha256(path: str, inode: int, size: int, mtime_ns: int, chunk_bytes: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def directory_sha256(directory: Path, pattern: str = "*.safetensors") -> str:
    """One digest over the matching files of a directory, in name order."""
    digest = hashlib.sha256()
    files = sorted(Path(directory).glob(pattern))
    if not files:
        raise BadInputError(f"no files matching {pattern!r} in {directory}")
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


HOST = socket.gethostname().replace(".", "_")
ORPHAN_AGE_SECONDS = 24 * 3600  # a temporary file of another machine's writer is an orphan after a day


def _temporary_prefix(name: str) -> str:
    """The writer's machine and process in each temporary file's name, so that a later run can tell the
    leftovers of a killed writer from the file a live one is writing."""
    return f".{name}.{HOST}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_orphans(directory: Path) -> list[Path]:
    """Delete what a killed writer left in ``directory``: the temporary files of ``write_bytes_atomic`` and
    the scratch folders of ``atomic_directory``, of a process of this machine that no longer runs, or of
    another machine and older than a day. Returns what was removed."""
    import time

    removed = []
    for path in [*Path(directory).glob(".*.tmp"), *Path(directory).glob(".*.partial")]:
        parts = path.name.rsplit(".", 4)  # .NAME . HOST . PID . RANDOM . tmp|partial
        if len(parts) != 5 or not parts[2].isdigit() or int(parts[2]) == os.getpid():
            continue
        host, pid = parts[1], int(parts[2])
        try:
            if host == HOST and _alive(pid) or host != HOST and time.time() - path.stat().st_mtime < ORPHAN_AGE_SECONDS:
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
        except FileNotFoundError:  # its writer finished (or another sweep removed it) meanwhile
            continue
    return removed


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path.name), suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a report is for others to read
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def is_complete(directory: Path) -> bool:
    return (Path(directory) / COMPLETE_MARKER).is_file()


@contextmanager
def exclusive(target: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the lock for building ``target`` (``fcntl.flock`` on a sibling lock file): a second process that
    wants the same entry waits for the first, then finds it complete instead of building it again. Yields
    whether the lock is held: always with ``wait``; without it, False at once when another process holds it.
    The lock is released when the block ends or the process dies."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks here: concurrent builders each build, and the last rename wins
        yield True
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_being_built(target: Path) -> bool:
    """Whether another process holds the lock of ``target`` now (``exclusive``)."""
    with exclusive(target, wait=False) as held:
        return not held


def build_once(target: Path, build: Callable[[Path], None]) -> None:
    """Make the cache entry ``target`` with ``build(scratch)`` unless it is complete: under its lock, so a second
    process waits for the first instead of building it again, and atomically, so a killed build leaves none."""
    if is_complete(target):
        return
    with exclusive(target):
        if not is_complete(target):
            with atomic_directory(target) as scratch:
                build(scratch)


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a scratch directory that becomes ``target`` only if the block succeeds.

    The completion marker is written last, inside the scratch directory, and the
    directory is renamed into place in one step. An existing incomplete target
    (left by a killed run of an older version) is replaced.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target.parent)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temporary_prefix(target.name), suffix=".partial"))
    try:
        yield scratch
        (scratch / COMPLETE_MARKER).write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
