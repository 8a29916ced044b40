"""Config loading shared by every stage: presets, --config files, --set overrides."""

from __future__ import annotations

import pytest

from common.config import ConfigError, load_stage_config, parse_overrides
from curate.config import CurateConfig


def test_a_config_file_of_sections_refuses_unknown_top_level_keys(tmp_path):
    """A typo'd section (or a stage field next to the sections) was dropped silently."""
    f = tmp_path / "c.yaml"
    f.write_text("curate: {short_side: 64}\ncurat: {fps: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['curat'\]"):
        load_stage_config(CurateConfig, "curate", "demo", str(f))
    f.write_text("curate: {short_side: 64}\nrecaption: {batch_size: 8}\n")
    assert load_stage_config(CurateConfig, "curate", "demo", str(f)).short_side == 64
    f.write_text("recaption: {batch_size: 8}\n")  # no curate section: the preset's curate
    assert load_stage_config(CurateConfig, "curate", "demo", str(f)).short_side == 128
    f.write_text("short_side: 96\n")  # one stage's fields at the top level
    assert load_stage_config(CurateConfig, "curate", "demo", str(f)).short_side == 96


def test_overrides_take_0_and_1_as_booleans_and_refuse_a_key_used_both_ways():
    cfg = load_stage_config(CurateConfig, "curate", "demo",
                            overrides=parse_overrides(["filters.drop_black=0"]))  # fmt: skip
    assert cfg.filters.drop_black is False
    with pytest.raises(ConfigError, match="score was given a value, not a section"):
        parse_overrides(["score=1", "score.ocr=false"])
    with pytest.raises(ConfigError, match="score is a section, not a value"):
        parse_overrides(["score.ocr=false", "score=1"])


def test_overrides_may_name_their_section():
    """The docs and error hints write curate.score.ocr=...: with or without the section."""
    over = parse_overrides(["curate.score.ocr=false", "fps=8"])
    cfg = load_stage_config(CurateConfig, "curate", "demo", overrides=over)
    assert cfg.score.ocr is False and cfg.fps == 8.0
