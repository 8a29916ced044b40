"""ray_cluster.yaml (AWS) and ray_cluster.local.yaml (on-prem) pass Ray's own config validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _prepared(name: str) -> tuple[dict, dict]:
    """The YAML as written, and as Ray's launcher prepares and validates it (offline)."""
    pytest.importorskip("jsonschema")  # ray's validator needs it
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / name).read_text())
    cfg = prepare_config(raw)
    validate_config(cfg)
    return raw, cfg


def test_aws_cluster_config_is_valid():
    raw, cfg = _prepared("ray_cluster.yaml")
    assert raw["provider"]["type"] == "aws" and raw["provider"]["region"]
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head must run no tasks"
    workers = {n: t for n, t in types.items() if n != cfg["head_node_type"]}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) > 0]
    cpu = [
        t
        for t in workers.values()
        if not t["resources"].get("GPU") and t["resources"].get("CPU", 0) > 0
    ]
    assert gpu and cpu, "a GPU worker type and a CPU worker type are needed"
    for t in workers.values():
        assert 0 <= t["min_workers"] <= t["max_workers"] <= cfg["max_workers"]
        assert t["node_config"]["InstanceType"]
    setup = " ".join(cfg["setup_commands"])
    assert "torch==2.14.1" in setup and "torchvision==0.29.1" in setup and "spacetime" in setup
    assert any("--head" in c for c in cfg["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP" in c for c in cfg["worker_start_ray_commands"])


def test_local_cluster_config_is_valid():
    raw, cfg = _prepared("ray_cluster.local.yaml")
    assert raw["provider"]["type"] == "local" and "available_node_types" not in raw
    assert raw["provider"]["head_ip"] and raw["provider"]["worker_ips"]
    assert cfg["max_workers"] == len(raw["provider"]["worker_ips"])
    head_cmd = " ".join(raw["head_start_ray_commands"])
    assert "--num-cpus=0" in head_cmd and "--num-gpus=0" in head_cmd, "the head must run no tasks"


def test_validation_rejects_unknown_keys():
    pytest.importorskip("jsonschema")
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    raw["available_node_types"]["head"]["gpus_please"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(raw))
