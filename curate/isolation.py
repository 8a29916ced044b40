"""Run risky decoding in a child process under a timeout, so that a decoder that hangs or
segfaults (decord is known to on some corrupt files) becomes a named failure, not a stalled
or crashed job.

One child per calling process is kept warm between calls (imports are paid once); a call
that times out or kills the child discards it and the next call starts a fresh one.

The child is a ``multiprocessing`` spawn ``Process`` talking over a ``Pipe``, not a
``ProcessPoolExecutor``: the executor's queues hold named semaphores that multiprocessing's
resource tracker must unregister when the process exits, and a Ray worker kills its child
processes (the tracker among them) before Python's own teardown, so every exiting worker
logged a "resource_tracker: process died unexpectedly" traceback per semaphore.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)


class DecodeTimeout(Exception):
    """The isolated call ran past its timeout (the child was killed)."""


class DecoderCrashed(Exception):
    """The child process died during the call (e.g. a segfault in the decoder)."""


class ChildTraceback(Exception):
    """The traceback of an exception raised in the child, chained as its cause."""


def _serve(conn: Connection, preload: tuple[str, ...]) -> None:
    """The child's loop: import ``preload``, say ready, then receive ``(fn, args)`` and send
    back ``(True, result, "")`` or ``(False, exception, its traceback)``; stop at end of
    input."""
    import importlib

    import cv2

    cv2.setNumThreads(1)
    for name in preload:
        importlib.import_module(name)
    conn.send(("ready", None))
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any, str] = (True, fn(*args), "")
        except Exception as e:  # noqa: BLE001 - handed back to the caller, who re-raises it
            reply = (False, e, "".join(traceback.format_exception(type(e), e, e.__traceback__)))
        try:
            conn.send(reply)
        except Exception as e:  # noqa: BLE001 - e.g. an exception that cannot be pickled
            conn.send(
                (False, RuntimeError(f"{type(e).__name__} sending the result: {e}"), reply[2])
            )


class IsolatedRunner:
    """A one-child runner that survives the death of its child.

    ``preload``: modules the child imports before it says it is ready; starting the child
    (a fresh interpreter, which on a loaded machine can take many seconds) is waited for up to
    ``start_timeout`` seconds and is not counted against any call's timeout.
    """

    def __init__(self, preload: tuple[str, ...] = (), start_timeout: float = 300.0) -> None:
        self.preload = tuple(preload)
        self.start_timeout = start_timeout
        self._proc: Any = None  # multiprocessing's SpawnProcess
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _get(self) -> Connection:
        if self._conn is not None:
            if self._proc is not None and self._proc.is_alive():
                return self._conn
            # the warm child died while idle (e.g. the OOM killer): not the next source's doing
            log.warning("the idle decoder process had exited (code %s); starting another",
                        self._proc.exitcode if self._proc is not None else None)  # fmt: skip
            self._discard()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        # daemon: stopped with this process, never left waiting on its pipe
        proc = ctx.Process(target=_serve, args=(child, self.preload), daemon=True,
                           name="isolated-decoder")  # fmt: skip
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        try:
            if parent.poll(self.start_timeout):
                parent.recv()  # ("ready", None)
                return parent
        except (EOFError, OSError):
            pass
        code = self._discard()
        raise DecoderCrashed(
            f"decoder process did not start within {self.start_timeout:.0f}s (exit code {code})"
        )

    def _discard(self) -> int | None:
        """Kill and forget the child; returns its exit code."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)
        return proc.exitcode

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
        """``fn(*args)`` in the child; raises :class:`DecodeTimeout` / :class:`DecoderCrashed`.

        Exceptions raised by ``fn`` itself are re-raised here unchanged, with the child's
        traceback chained as their cause (:class:`ChildTraceback`).
        """
        with self._lock:
            conn = self._get()
            try:
                conn.send((fn, args))
                ready = conn.poll(timeout)  # also true at end of input (the child died)
                if not ready:
                    self._discard()
                    raise DecodeTimeout(f"no result after {timeout:.0f}s; decoder process killed")
                ok, value, tb = conn.recv()
            except (EOFError, OSError) as e:
                code = self._discard()
                raise DecoderCrashed(f"decoder process died (exit code {code})") from e
        if ok:
            return value
        raise value from ChildTraceback(f"in the isolated child:\n{tb}")

    def close(self) -> None:
        """Stop the child."""
        with self._lock:
            self._discard()


_RUNNER: IsolatedRunner | None = None


def runner() -> IsolatedRunner:
    """This process's shared runner."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = IsolatedRunner(preload=("curate.clips",))
    return _RUNNER
