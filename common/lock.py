"""One spacetime job at a time per output directory (``curate`` and ``recaption`` both write
OUT; two at once would caption clips twice or delete each other's staged work)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.config import ConfigError

LOCK_NAME = ".spacetime.lock"
"""The lock file in OUT (an OS file lock: released when its process ends, even by kill -9)."""


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold OUT's lock for the block; ConfigError at once if another job holds it."""
    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout as e:
        raise ConfigError(
            f"{out} is in use by another spacetime job (curate or recaption); wait for it to "
            "end, or write to another --output"
        ) from e
    try:
        yield
    finally:
        lock.release()
