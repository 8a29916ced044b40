"""``OUT/manifest.json``: run id, resolved config, code version, schema version and counts."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from schemas.tables import MANIFEST_COUNTS, SCHEMA_VERSION

_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """Package version, plus the git commit (and ``-dirty``) when run from a checkout."""
    try:
        from importlib.metadata import version

        ver = version("spacetime")
    except Exception:  # noqa: BLE001 - not installed: a bare checkout
        ver = "0+unknown"
    try:
        sha = subprocess.run(
            ["git", "-C", str(_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()  # fmt: skip
        return f"{ver}+g{sha}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return ver


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rejects_by_reason(rejects: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """``{stage: {reason: count}}`` over reject rows, sorted for stable output."""
    c = Counter((r["stage"], r["reason"]) for r in rejects)
    out: dict[str, dict[str, int]] = {}
    for (stage, reason), n in sorted(c.items()):
        out.setdefault(stage, {})[reason] = n
    return out


def build_manifest(
    run_id: str,
    config: Mapping[str, Any],
    counts: Mapping[str, int],
    by_reason: Mapping[str, Mapping[str, int]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest dict (keys of ``schemas.tables.MANIFEST_FIELDS`` first)."""
    missing = [k for k in MANIFEST_COUNTS if k not in counts]
    if missing:
        raise ValueError(f"manifest counts lack {missing}")
    return {
        "run_id": run_id,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "schema_version": SCHEMA_VERSION,
        "config": dict(config),
        "counts": {k: int(counts[k]) for k in counts},
        "rejects_by_reason": {k: dict(v) for k, v in by_reason.items()},
        **(dict(extra) if extra else {}),
    }


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """Load ``OUT/manifest.json``."""
    return json.loads((Path(out_dir) / "manifest.json").read_text())


def summary(manifest: Mapping[str, Any]) -> str:
    """A few human lines: the counts and the rejects per stage and reason."""
    c = manifest["counts"]
    lines = [
        f"sources: {c['sources_seen']} seen, {c['sources_ok']} ok, {c['sources_failed']} failed"
        + (f", {c['sources_duplicate']} duplicate" if c.get("sources_duplicate") else ""),
        f"clips:   {c['clips_kept']} kept, {c['clips_rejected']} rejected",
    ]
    for stage, reasons in manifest.get("rejects_by_reason", {}).items():
        lines.append(f"  {stage:8s} " + ", ".join(f"{r}={n}" for r, n in reasons.items()))
    if "filters_would_drop" in manifest:  # score_only: nothing was dropped by the filters
        would = manifest["filters_would_drop"]
        lines.append("score_only: of the clips kept after dedup, the filters would drop "
                     + (", ".join(f"{r}={n}" for r, n in sorted(would.items())) or "nothing"))  # fmt: skip
    if manifest.get("filters_unjudged"):  # null scores pass their rule
        lines.append("not judged (null score, kept): " + ", ".join(
            f"{r}={n}" for r, n in sorted(manifest["filters_unjudged"].items())))  # fmt: skip
    return "\n".join(lines)
