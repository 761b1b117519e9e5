"""Stage records are keyed by the settings they depend on: a changed setting recomputes
its stage and everything downstream on --resume; a run directory is never silently reused."""

import dataclasses
import json

import pytest

import fluidrec.experiments.render as render_module
import fluidrec.experiments.reproduce as rep
from fluidrec.cli import main
from fluidrec.errors import UsageError
from fluidrec.experiments.config import ReproduceConfig
from fluidrec.experiments.stages import StageRunner, stage_key


class Calls:
    def __init__(self):
        self.ran = []
        self.lines = []

    def runner(self, out, resume):
        return StageRunner(out, resume, log=self.lines.append)

    def stage(self, name, value=1):
        def fn():
            self.ran.append(name)
            return {"value": value}

        return fn


def test_same_key_is_cached_changed_key_recomputes_downstream(tmp_path):
    c = Calls()
    out_a = tmp_path / "a_out"
    for settings, resume in (({"n": 1}, False), ({"n": 1}, True), ({"n": 2}, True)):
        r = c.runner(tmp_path, resume)
        out_a.mkdir(exist_ok=True)
        (out_a / "from_before").write_text("x")
        ka = stage_key("a", settings)
        r.run("a", c.stage("a"), key=ka, outputs=[out_a])
        r.run("b", c.stage("b"), key=stage_key("b", ka))  # downstream: its key holds a's
        r.run("c", c.stage("c"), key=stage_key("c", {"m": 0}))  # independent of a
    assert c.ran == ["a", "b", "c", "a", "b"]  # 1st run: all; resume: none; changed n: a and b
    assert sum("recomputing" in line for line in c.lines) == 2
    assert not (out_a / "from_before").exists()  # a's old outputs were removed before it reran
    assert json.loads((tmp_path / "stages" / "a.json").read_text())["key"] == stage_key("a", {"n": 2})


def test_record_without_key_from_an_older_version_is_recomputed(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "a.json").write_text(json.dumps({"summary": {"value": 0}, "seconds": 1.0}))
    c = Calls()
    assert c.runner(tmp_path, True).run("a", c.stage("a", 5), key="k") == {"value": 5}


def test_killed_stage_keeps_outputs_of_its_own_settings_only(tmp_path):
    outputs = tmp_path / "enc"

    def killed():
        outputs.mkdir(exist_ok=True)
        (outputs / "checkpoint.pt").write_text("partial")
        raise KeyboardInterrupt  # the kill

    c = Calls()
    with pytest.raises(KeyboardInterrupt):
        c.runner(tmp_path, False).run("encoder", killed, key="k1", outputs=[outputs])
    assert not (tmp_path / "stages" / "encoder.json").exists()  # no record: it reruns
    c.runner(tmp_path, True).run("encoder", lambda: {"kept": (outputs / "checkpoint.pt").exists()}, key="k1", outputs=[outputs])
    assert json.loads((tmp_path / "stages" / "encoder.json").read_text())["summary"] == {"kept": True}  # same key: resumable
    (tmp_path / "stages" / "encoder.json").unlink()
    with pytest.raises(KeyboardInterrupt):
        c.runner(tmp_path, True).run("encoder", killed, key="k1", outputs=[outputs])
    c.runner(tmp_path, True).run("encoder", lambda: {"kept": (outputs / "checkpoint.pt").exists()}, key="k2", outputs=[outputs])
    assert json.loads((tmp_path / "stages" / "encoder.json").read_text())["summary"] == {"kept": False}  # other key: removed
    assert any("killed run with other settings" in line for line in c.lines)


def test_a_rerun_that_fails_leaves_no_old_record(tmp_path):
    c = Calls()
    c.runner(tmp_path, False).run("a", c.stage("a"), key="k")

    def boom():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        c.runner(tmp_path, False).run("a", boom, key="k")  # --force rerun, killed
    assert not (tmp_path / "stages" / "a.json").exists()


def test_stage_key_is_stable_and_order_sensitive():
    assert stage_key("a", {"x": 1, "y": (2, 3)}) == stage_key("a", {"y": [2, 3], "x": 1})
    assert stage_key("a", 1, 2) != stage_key("a", 2, 1)


# ---------------------------------------------------------------- reproduce() with the stages faked


def _report(auc=0.6):
    return {"click": {"auc": auc, "gauc": auc, "logloss": 0.5}, "buckets": {}}


@pytest.fixture()
def fake_job(monkeypatch):
    """reproduce() with every stage a recorder: the keying and the run-directory rules, in milliseconds."""
    ran = []

    def rec(name, value):
        ran.append(name)
        return value

    ab_rows = {row: {"ctr": {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}} for row in ("slice", "no_id", "fluid")}
    closed_rows = {row: {"quality_watch_duration": {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "half_width": 0.0}} for row in ("fluid", "oracle")}
    fakes = {
        "stage_world": lambda cfg, paths: rec("world", {"seed": cfg.seed}),
        "stage_encoder": lambda cfg, paths: rec("encoder", {}),
        "stage_embed": lambda cfg, paths: rec("embed", {}),
        "stage_codes": lambda cfg, paths: rec("codes", {}),
        "stage_codes_truth": lambda cfg, paths: rec("codes_truth", {"skipped": "fake"}),
        "stage_codes_oracle": lambda cfg, paths: rec("codes_oracle", {"skipped": "fake"}),
        "stage_truth": lambda cfg, paths, features: rec("truth", {"skipped": "fake"}),
        "stage_arm": lambda cfg, paths, arm, features, ranker_seed=None, **kw: rec(f"ranker_{arm}@{ranker_seed}", _report()),
        "stage_peer": lambda cfg, paths, arm, features: rec(f"peer_{arm}", _report()),
        "stage_ab": lambda cfg, paths, features: rec("online_ab", {"arms": ab_rows, "n_requests": cfg.ab_requests, "n_candidates": 1,
                                                                   "n_users": 1, "totals": {}, "config": {}}),
        "stage_stream": lambda cfg, paths, name, seed, features: rec(f"stream_{name}", _report()),
        "stage_ab_closed": lambda cfg, paths, features, assignment: rec(f"online_ab_closed_{assignment}", {"arms": closed_rows, "n_requests": 1}),
        "stage_encoder_lsa": lambda cfg, paths: rec("encoder_lsa", {}),
        "stage_ablation": lambda cfg, paths: rec("encoder_ablation", {}),
        "_features": lambda cfg, paths: None,
    }  # fmt: skip
    for name, fn in fakes.items():
        monkeypatch.setattr(rep, name, fn)
    monkeypatch.setattr(render_module, "render_outputs", lambda cfg, paths, results: paths.root / "report.md")
    return ran


def test_changed_setting_recomputes_only_what_depends_on_it(fake_job, tmp_path):
    cfg = ReproduceConfig.tiny(seed=0)
    out = tmp_path / "run"
    rep.reproduce(cfg, out)
    first = list(fake_job)
    assert "world" in first and "online_ab" in first and "ranker_fluid@1" in first
    assert {"stream_fluid", "stream_fluid@1", "online_ab_closed_user", "online_ab_closed_mirror"} <= set(first)
    fake_job.clear()
    rep.reproduce(cfg, out, resume=True)
    assert fake_job == []  # nothing changed: everything cached
    rep.reproduce(dataclasses.replace(cfg, ab_requests=cfg.ab_requests + 1), out, resume=True)
    assert fake_job == ["online_ab"]  # the A/B alone (its record was for another --ab-requests)
    fake_job.clear()
    rep.reproduce(dataclasses.replace(cfg, ab_requests=cfg.ab_requests + 1, closed_window_minutes=5.0), out, resume=True)
    assert fake_job == ["online_ab_closed_user", "online_ab_closed_mirror"]  # the closed loops alone
    fake_job.clear()
    rep.reproduce(dataclasses.replace(cfg, ab_requests=cfg.ab_requests + 1, codebook_size=16), out, resume=True)
    assert "world" not in fake_job and "encoder" not in fake_job and "encoder_lsa" not in fake_job
    assert {"codes", "codes_truth", "truth", "ranker_fluid@None", "ranker_fluid@1", "peer_gbdt", "online_ab"} <= set(fake_job)
    fake_job.clear()
    rep.reproduce(ReproduceConfig.tiny(seed=1), out, resume=True)
    assert fake_job[0] == "world" and len(fake_job) == len(first)  # another --seed: every stage again
    assert json.loads((out / "config.json").read_text())["reproduce"]["seed"] == 1


def test_a_run_directory_needs_resume_or_force(fake_job, tmp_path, capsys):
    out = tmp_path / "run"
    rep.reproduce(ReproduceConfig.tiny(seed=0), out)
    fake_job.clear()
    with pytest.raises(UsageError, match="--resume .* or --force"):
        rep.reproduce(ReproduceConfig.tiny(seed=1), out)
    assert fake_job == [] and json.loads((out / "config.json").read_text())["reproduce"]["seed"] == 0
    capsys.readouterr()
    assert main(["reproduce", "--scale", "tiny", "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    rep.reproduce(ReproduceConfig.tiny(seed=0), out, force=True)
    assert "world" in fake_job and "online_ab" in fake_job  # --force: all again, nothing reused


def test_partial_run_directory_needs_resume_or_force(fake_job, tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "world.started.json").write_text("{}")  # killed in the first stage
    with pytest.raises(UsageError):
        rep.reproduce(ReproduceConfig.tiny(), tmp_path)
