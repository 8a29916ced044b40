"""The dataset report at scale: time and peak memory as the number of clips grows.

    python benchmarks/report_scale.py --source demo_out/data --rows 20000,200000

Takes a curated output (``clips/``, ``rejects/``, optional ``pairs/``, ``manifest.json``),
replicates its tables to about N clip rows (every copy of a row gets a fresh ``clip_id``;
rejects and pairs grow by the same factor), runs ``spacetime report`` on each size in a
fresh process and prints one table: rows, seconds, the largest single-process RSS and the
largest sum of RSS over the report process and everything it started (Ray included), both
sampled every 0.2 s (``curate_throughput.MemSampler``; until stop 12 the single-process
column was the kernel's high-water mark, VmHWM).
Bounded memory means the last two columns stay flat while the rows grow.

The copies share their video bytes, written with Parquet dictionary encoding so that a
200k-clip dataset stays small on disk; readers still decode full rows, so what the report
holds in memory is what a real dataset of that size would make it hold. The manifest is
copied as is, so the report's consistency checks will note the mismatch; the numbers
measured here are time and memory, not the page's content.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.curate_throughput import MemSampler  # noqa: E402

log = logging.getLogger("report_scale")
TABLES = ("clips", "rejects", "pairs")
ROWS_PER_FILE = 20_000


def _read(src: Path, table: str) -> pa.Table | None:
    files = sorted((src / table).glob("*.parquet"))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files])


def replicate(src: Path, dst: Path, rows: int) -> dict[str, int]:
    """Write ``dst`` with the tables of ``src`` grown to about ``rows`` clips; row counts."""
    clips = _read(src, "clips")
    if clips is None or clips.num_rows == 0:
        raise SystemExit(f"{src}: no clips/ rows to replicate (run `spacetime curate` first)")
    copies = max(1, -(-rows // clips.num_rows))
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    counts = {}
    for name in TABLES:
        base = _read(src, name)
        if base is None:
            continue
        (dst / name).mkdir()
        total, part, buf = 0, 0, []
        for i in range(copies):
            t = base
            if "clip_id" in t.column_names:
                ids = pc.binary_join_element_wise(t["clip_id"], pa.scalar(f"-{i}"), "")
                t = t.set_column(
                    t.schema.get_field_index("clip_id"), t.schema.field("clip_id"), ids
                )
            buf.append(t)
            total += t.num_rows
            if sum(b.num_rows for b in buf) >= ROWS_PER_FILE or i == copies - 1:
                out = pa.concat_tables(buf)
                pq.write_table(out, dst / name / f"part-{part:05d}.parquet",
                               row_group_size=4096, dictionary_pagesize_limit=64 << 20)  # fmt: skip
                part, buf = part + 1, []
        counts[name] = total
    for extra in ("sources", "manifest.json"):
        p = src / extra
        if p.is_dir():
            shutil.copytree(p, dst / extra)
        elif p.exists():
            shutil.copy(p, dst / extra)
    return counts


def run_report(data: Path) -> tuple[float, MemSampler, int]:
    """``spacetime report data`` in a child process, sampled for memory; (s, sampler, rc)."""
    cmd = [sys.executable, "-m", "spacetime_cli", "report", str(data)]
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
    root = Path(__file__).resolve().parent.parent
    t = time.monotonic()
    with MemSampler() as mem:
        proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    if proc.returncode:
        log.error("report failed (%d): %s", proc.returncode, proc.stderr[-2000:])
    return time.monotonic() - t, mem, proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--source", required=True, help="a curated output dir (curate/recaption OUT)")
    p.add_argument("--rows", default="20000,200000", help="comma-separated clip counts")
    p.add_argument("--work", default="bench_out/report_scale", help="scratch dir for the copies")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    lines = ["| clips | rejects | pairs | report s | peak RSS, one process | peak RSS, tree |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    failed = False
    for n in (int(x) for x in args.rows.split(",")):
        data = Path(args.work) / f"rows_{n}"
        counts = replicate(Path(args.source), data, n)
        log.info("replicated to %s: %s", data, counts)
        secs, mem, rc = run_report(data)
        failed |= rc != 0
        lines.append(
            f"| {counts.get('clips', 0)} | {counts.get('rejects', 0)} | {counts.get('pairs', 0)} "
            f"| {secs:.1f}{' (failed)' if rc else ''} | {mem.peak / 2**20:.0f} MiB "
            f"| {mem.total / 2**20:.0f} MiB |"
        )
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
