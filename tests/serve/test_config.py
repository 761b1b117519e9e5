"""ServeConfig and ServiceConfig refuse bad values when built; the CLI parses into them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluidrec.errors import ConfigError, UsageError
from fluidrec.serve.config import ServeConfig
from fluidrec.serve.service import ServiceConfig


def test_defaults_are_loopback_and_sqlite_in_the_run():
    cfg = ServeConfig(run=Path("runs/x"))
    assert cfg.state == "sqlite:///runs/x/serve/state.sqlite" and cfg.state_kind == "sqlite"
    assert cfg.loopback and cfg.compile == "background"
    assert ServeConfig.from_json(cfg.to_json()) == cfg
    assert not ServeConfig(run=Path("r"), host="0.0.0.0").loopback


@pytest.mark.parametrize("kw", [{"state": "mysql://x"}, {"port": 0}, {"workers": 0}, {"compile": "maybe"}, {"max_body_bytes": 10}, {"threads": 0}])
def test_bad_serve_config(kw):
    with pytest.raises(ConfigError):
        ServeConfig(run=Path("r"), **kw)


@pytest.mark.parametrize("kw", [{"max_candidates": 0}, {"slice_ms": 0}, {"live_grace_ms": -1}])
def test_bad_service_config(kw):
    with pytest.raises(ConfigError):
        ServiceConfig(**kw)


def test_token_file(tmp_path):
    (tmp_path / "t").write_text("  abc \n")
    assert ServeConfig(run=tmp_path, token_file=tmp_path / "t").read_token() == "abc"
    (tmp_path / "empty").write_text("\n")
    for bad in ("empty", "missing"):
        with pytest.raises(UsageError):
            ServeConfig(run=tmp_path, token_file=tmp_path / bad).read_token()


def test_cli_bad_run_is_one_line_exit_2(tmp_path, capsys):
    from fluidrec.cli import main

    assert main(["serve", "--run", str(tmp_path / "nope"), "--compile", "off"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run" in err[0]
    assert main(["serve", "--run", str(tmp_path), "--compile", "off"]) == 2  # a directory without a ranker
    assert "model.pt" in capsys.readouterr().err
