"""The one place that starts or joins Ray."""

from __future__ import annotations

import logging
import os

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
