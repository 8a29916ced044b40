"""Frozen-dataclass configs: YAML presets, CLI overrides, and field docs from docstrings.

Every stage config is a frozen dataclass whose fields each carry a docstring (a string
literal on the line after the field). Presets live in ``configs/<name>.yaml`` with one
section per stage (``curate:``, ``recaption:``, ``train:``).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A preset, config file or override is invalid."""


def preset_path(name_or_path: str) -> Path:
    """Resolve a preset name (``demo``) or a YAML path to a file that exists."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    cand = CONFIG_DIR / f"{name_or_path}.yaml"
    if cand.exists():
        return cand
    known = sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"no preset or config file {name_or_path!r}; presets: {', '.join(known)}")


def load_yaml(path: Path | str) -> dict[str, Any]:
    """Load a YAML mapping (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a YAML / CLI value into the annotated type (nested dataclasses included)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for a in non_none:
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):  # --set flag=0 parses as YAML int
            return bool(value)
        if isinstance(value, str) and value.lower() in (
            "true",
            "1",
            "yes",
            "on",
            "false",
            "0",
            "no",
            "off",
        ):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from e
        if tp is int and isinstance(value, float) and value != int(value):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build a config dataclass from a mapping; unknown keys are an error naming the key."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid: {sorted(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where or cls.__name__}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/YAML-friendly dict of a config (tuples become lists)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} must look like key=value (e.g. filters.min_motion=0.5)"
            )
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} was given a value, not a section")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"override {item!r}: {key.strip()} is a section, not a value")
        node[parts[-1]] = value
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge of mappings; ``over`` wins."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_stage_config(
    cls: type[T],
    section: str,
    preset: str = "demo",
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Resolve a stage config: preset section, then ``config_file`` section, then overrides."""
    preset_data = load_yaml(preset_path(preset))
    data: dict[str, Any] = dict(preset_data.get(section) or {})
    if config_file:
        extra = load_yaml(config_file)
        sections = set(preset_data) | {section}
        if sections & set(extra):  # a file of sections, as the presets: the other keys are typos
            unknown = sorted(set(extra) - sections)
            if unknown:
                raise ConfigError(
                    f"{config_file}: unknown top-level key(s) {unknown}; its sections are "
                    f"{sorted(sections)} (or write one stage's fields at the top level)"
                )
            data = deep_merge(data, extra.get(section) or {})
        else:  # one stage's fields at the top level
            data = deep_merge(data, extra)
    if overrides:
        if isinstance(overrides.get(section), Mapping):  # --set curate.score.x=… as the docs
            rest = {k: v for k, v in overrides.items() if k != section}
            overrides = deep_merge(rest, overrides[section])
        data = deep_merge(data, overrides)
    return from_dict(cls, data, where=f"{section}")


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a dataclass's fields (the string literal after each field)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(src).body[0].body  # type: ignore[attr-defined]
        for a, b in zip(body, body[1:], strict=False):
            if (
                isinstance(a, ast.AnnAssign)
                and isinstance(a.target, ast.Name)
                and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant)
                and isinstance(b.value.value, str)
            ):
                docs[a.target.id] = inspect.cleandoc(b.value.value)
    return docs


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows of (name, type, default, doc) for every field, nested configs flattened."""
    rows = []
    docs = field_docs(cls)
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, prefix=f"{prefix}{f.name}."))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "(required)"
        tname = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        rows.append((prefix + f.name, tname, default, docs.get(f.name, "")))
    return rows
