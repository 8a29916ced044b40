"""The one place that starts or joins Ray."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: float | None = None, quiet: bool = True) -> None:
    """Join ``address`` (or ``RAY_ADDRESS``) if given, else start a local Ray in-process.

    Safe to call twice: an already initialised Ray is reused.
    """
    import ray

    configure_data_context()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, logging_level=logging.WARNING if quiet else logging.INFO)
        return
    # A private local cluster: token auth buys nothing here and writes a token file.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs = {
        "include_dashboard": False,
        "logging_level": logging.WARNING if quiet else logging.INFO,
    }
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    log.info("started local Ray with %s CPUs", ray.cluster_resources().get("CPU"))


def configure_data_context() -> None:
    """Ray Data settings every job of this process uses (the driver's context reaches its tasks).

    Parquet reads go through Ray Data's first datasource path: on this project's 2-core
    reference machine the V2 path (``ListFiles`` -> ``ReadFilesParquetV2``) cost 5-11 s of
    overhead per read of two small files, the first path 0.25-3.5 s (measured with
    ``read_parquet(files).map_batches(...).count()``, 4 runs each). Each stage reads several
    times, so this dominates small and medium runs.

    Groupbys (dedup bands, report sums) use Ray Data's task-based sort shuffle unless
    ``RAY_DATA_DEFAULT_SHUFFLE_STRATEGY`` says otherwise: the default hash shuffle starts
    aggregator actors first, which cost 6-9 s of each dedup of a 47-clip run here against
    about 1.5 s for the sort shuffle (``groupby(...).map_groups(...)`` on 329 band rows, 1-4
    partitions). On a large cluster, ``RAY_DATA_DEFAULT_SHUFFLE_STRATEGY=hash_shuffle``
    brings the hash shuffle back.
    """
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.use_datasource_v2 = False
    if not os.environ.get("RAY_DATA_DEFAULT_SHUFFLE_STRATEGY"):
        ctx.shuffle_strategy = "sort_shuffle_pull_based"


class _NoCpuWarning(logging.Filter):
    """Drops Ray Data's "no available CPUs ... will hang" warning (see ``free_cpu_check``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "does not have any available CPUs" not in record.getMessage()


@contextlib.contextmanager
def free_cpu_check(what: str, wait_s: float = 0.5) -> Iterator[None]:
    """Around a Ray Data write: warn when no CPU is free, without Ray 2.60's false warning.

    ``write_parquet`` checks ``ray.available_resources()`` again after its job has finished,
    when the finished tasks' CPUs are often not back in that view yet, and warned "The
    Dataset job will hang unless more CPUs are freed up" on every curate run. The check that
    matters, before the job, is made here instead: waiting up to ``wait_s`` for the view to
    catch up, then warning in plain words if no CPU is free."""
    import ray

    deadline = time.monotonic() + wait_s
    while not ray.available_resources().get("CPU") and time.monotonic() < deadline:
        time.sleep(0.01)
    if not ray.available_resources().get("CPU"):
        log.warning("%s: no CPU of the Ray cluster is free now (other jobs or actors hold "
                    "them); it starts when one is", what)  # fmt: skip
    quiet = _NoCpuWarning()
    ray_log = logging.getLogger("ray.data.dataset")
    ray_log.addFilter(quiet)
    try:
        yield
    finally:
        ray_log.removeFilter(quiet)
