"""Every sub-command's --help works; every config field is documented; docs/config.md is current."""

from __future__ import annotations

import subprocess
import sys

import pytest

from common.config import describe
from common.docs import main as docs_main
from common.docs import stage_classes
from spacetime_cli import build_parser

COMMANDS = ("curate", "recaption", "train", "generate", "report", "demo")


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_subcommand_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: spacetime {cmd}" in out
    assert len(out.splitlines()) > 5, out


def test_console_script_runs():
    r = subprocess.run(
        [sys.executable, "-m", "spacetime_cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "curate" in r.stdout


def test_every_config_field_has_a_docstring():
    missing = [
        f"{section}.{name}"
        for section, cls, _ in stage_classes()
        for name, _t, _d, doc in describe(cls)
        if not doc.strip()
    ]
    assert not missing, f"config fields without a docstring: {missing}"


def test_config_reference_is_current():
    assert docs_main(["--check"]) == 0, "docs/config.md is stale: run `python -m common.docs`"
