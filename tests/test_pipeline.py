"""The pipeline spine with stand-in stages: ordering, skip-when-done, resume after a crash, config drift, force."""

import json

import pytest

from modeling_speechtext.cli.main import main as cli_main
from modeling_speechtext.pipeline import runner as pl
from modeling_speechtext.pipeline.presets import list_presets, load_preset, parse_overrides

CALLS: list[str] = []


def _stage_a(config, output_dir, run_dir):
    CALLS.append("a")
    (output_dir / "out.txt").write_text(str(config["size"]))
    return {"size": config["size"]}


def _stage_b(config, output_dir, run_dir):
    CALLS.append("b")
    if config.get("crash"):
        raise RuntimeError("boom")
    upstream = (run_dir / "a" / "out.txt").read_text()
    return {"upstream": int(upstream) * 2}


@pytest.fixture
def fake_stages(monkeypatch, tmp_path):
    monkeypatch.setattr(
        pl,
        "STAGES",
        [pl.StageSpec("a", f"{__name__}:_stage_a", "first"), pl.StageSpec("b", f"{__name__}:_stage_b", "second")],
    )
    monkeypatch.setattr(pl, "STAGE_NAMES", ["a", "b"])
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "pipeline.yaml").write_text("seed: 7\nstages: [a, b]\n")
    (preset / "a.yaml").write_text("size: 3\n")
    (preset / "b.yaml").write_text("crash: false\n")
    CALLS.clear()
    return preset


def test_runs_in_order_and_skips_when_done(fake_stages, tmp_path):
    out = tmp_path / "run"
    report = pl.run_pipeline(fake_stages, out)
    assert [e["status"] for e in report["stages"]] == ["done", "done"]
    assert report["stages"][1]["metrics"] == {"upstream": 6}
    assert json.loads((out / "pipeline.json").read_text())["stages"][0]["stage"] == "a"
    assert json.loads((out / "a" / "stage.json").read_text())["config"] == {"size": 3, "seed": 7}
    assert CALLS == ["a", "b"]
    report = pl.run_pipeline(fake_stages, out)
    assert [e["status"] for e in report["stages"]] == ["skipped", "skipped"]
    assert report["stages"][1]["metrics"] == {"upstream": 6}
    assert CALLS == ["a", "b"]


def test_stage_json_records_where_it_ran(fake_stages, tmp_path, monkeypatch):
    """Hardware, threads and the training precision (the stage's own decision) travel with the seconds."""
    import sys

    from modeling_speechtext import hardware as hw

    machine = hw.HardwareInfo(cpu_model="Intel Xeon 2.8GHz", cpu_flags=("avx512f",), cpu_native_bf16=False)
    monkeypatch.setattr(hw, "detect_hardware", lambda: machine)

    def trains(config, output_dir, run_dir):  # stage b as a training stage deciding its precision
        return {"bf16": hw.resolve_bf16("auto").bf16}

    monkeypatch.setattr(sys.modules[__name__], "_stage_b", trains)
    out = tmp_path / "run"
    pl.run_pipeline(fake_stages, out)
    a = json.loads((out / "a" / "stage.json").read_text())["environment"]
    b = json.loads((out / "b" / "stage.json").read_text())["environment"]
    assert a["hardware"]["cpu_model"] == "Intel Xeon 2.8GHz" and a["hardware"]["cpu_native_bf16"] is False
    assert a["precision"] == "float32" and a["precision_decisions"] == []  # a data stage trains nothing
    assert b["precision"] == "float32" and b["precision_decisions"][0]["requested"] == "auto"
    assert "no native bf16" in b["precision_decisions"][0]["reason"]
    assert isinstance(b["torch_threads"], int) and b["torch_threads"] >= 1
    report = json.loads((out / "pipeline.json").read_text())
    assert report["hardware"]["cpu_flags"] == ["avx512f"]
    assert report["stages"][1]["environment"]["precision"] == "float32"
    report = pl.run_pipeline(fake_stages, out)  # skipped stages keep the environment they were measured in
    assert report["stages"][1]["status"] == "skipped"
    assert report["stages"][1]["environment"]["hardware"]["cpu_model"] == "Intel Xeon 2.8GHz"


def test_crash_leaves_no_marker_and_resumes(fake_stages, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom"):
        pl.run_pipeline(fake_stages, out, overrides={"b": {"crash": True}})
    assert not (out / "b" / "stage.json").exists()
    assert json.loads((out / "pipeline.json").read_text())["stages"][1]["status"] == "failed"
    report = pl.run_pipeline(fake_stages, out)
    assert [e["status"] for e in report["stages"]] == ["skipped", "done"]
    assert CALLS == ["a", "b", "b"]


def test_changed_config_is_an_error_and_force_reruns_downstream(fake_stages, tmp_path):
    out = tmp_path / "run"
    pl.run_pipeline(fake_stages, out)
    with pytest.raises(RuntimeError, match="different config"):
        pl.run_pipeline(fake_stages, out, overrides={"a": {"size": 5}})
    report = pl.run_pipeline(fake_stages, out, overrides={"a": {"size": 5}}, force=["a"])
    assert [e["status"] for e in report["stages"]] == ["done", "done"]
    assert report["stages"][1]["metrics"] == {"upstream": 10}


def test_unknown_stage_and_preset(fake_stages, tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        pl.run_pipeline(fake_stages, tmp_path / "run", stages=["nope"])
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        load_preset("nope")


def test_overrides_parse_yaml_values():
    assert parse_overrides(["speech_corpus.num_proc=4", "a.list=[1, 2]", "a.flag=true"]) == {
        "speech_corpus": {"num_proc": 4},
        "a": {"list": [1, 2], "flag": True},
    }
    with pytest.raises(ValueError, match="stage.key=value"):
        parse_overrides(["nodot=1"])


def test_shipped_presets_cover_their_stage_lists():
    assert {"micro", "demo", "tiny", "paper"} <= set(list_presets())
    for preset in list_presets():
        cfg = load_preset(preset)
        for stage in cfg["pipeline"]["stages"]:
            assert stage in pl.STAGE_NAMES, (preset, stage)
            assert stage in cfg, f"preset {preset} lists {stage} but has no {stage}.yaml"
            assert cfg[stage]["seed"] == cfg["pipeline"]["seed"]


def test_cli_reports_bad_preset_in_one_line(capsys):
    assert cli_main(["pipeline", "--preset", "nope", "--output_dir", "/tmp/x"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'nope'" in err and "Traceback" not in err
