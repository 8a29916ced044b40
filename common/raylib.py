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
