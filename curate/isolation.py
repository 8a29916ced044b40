"""Run risky decoding in a child process under a timeout, so that a decoder that hangs or
segfaults (decord is known to on some corrupt files) becomes a named failure, not a stalled
or crashed job.

One child per calling process is kept warm between calls (imports are paid once); a call
that times out or kills the child discards it and the next call starts a fresh one.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class DecodeTimeout(Exception):
    """The isolated call ran past its timeout (the child was killed)."""


class DecoderCrashed(Exception):
    """The child process died during the call (e.g. a segfault in the decoder)."""


def _child_init() -> None:
    import cv2

    cv2.setNumThreads(1)


class IsolatedRunner:
    """A one-process pool that survives the death of its process."""

    def __init__(self) -> None:
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=1, mp_context=mp.get_context("spawn"), initializer=_child_init
            )
        return self._pool

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            try:
                proc.kill()
            except (OSError, AttributeError):
                pass
        pool.shutdown(wait=False, cancel_futures=True)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """``fn(*args)`` in the child; raises :class:`DecodeTimeout` / :class:`DecoderCrashed`.

        Exceptions raised by ``fn`` itself are re-raised here unchanged.
        """
        with self._lock:
            fut = self._get().submit(fn, *args)
            try:
                return fut.result(timeout=timeout)
            except cf.TimeoutError as e:
                self._discard()
                raise DecodeTimeout(
                    f"no result after {timeout:.0f}s; decoder process killed"
                ) from e
            except cf.process.BrokenProcessPool as e:
                self._discard()
                raise DecoderCrashed(f"decoder process died ({e})") from e

    def close(self) -> None:
        """Stop the child."""
        with self._lock:
            self._discard()


_RUNNER: IsolatedRunner | None = None


def runner() -> IsolatedRunner:
    """This process's shared runner."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = IsolatedRunner()
    return _RUNNER
