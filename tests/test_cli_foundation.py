"""The `vanillanet-edge` command line, driven through click's CliRunner: help, data, fuse, info, errors."""
from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vanillanet_edge.cli.main import main
from vanillanet_edge.model.checkpoint import load_checkpoint, save_checkpoint


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def all_commands(group: click.Group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


COMMANDS = list(all_commands(main))


def test_the_foundation_commands_exist():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"data", "data digits", "train", "fuse", "info", "run", "init", "convert", "calibrate",
            "bench", "eval", "report", "baseline"} <= names


@pytest.mark.parametrize("path", [()] + [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "main")
def test_help_of_every_command(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    cmd = main
    for name in path:
        cmd = cmd.commands[name]
    first_line = (cmd.help or "").strip().splitlines()[0]
    assert first_line[:40] in result.output
    assert invoke(*path, "-h").exit_code == 0


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and "0.1.0" in result.output


def test_data_digits(tmp_path):
    out = tmp_path / "digits16"
    result = invoke("data", "digits", out, "--size", "16")
    assert result.exit_code == 0, result.output
    assert "wrote 1438 train and 359 val images (16x16 RGB PNG)" in result.output
    assert sorted(p.name for p in (out / "train").iterdir()) == [str(i) for i in range(10)]
    assert len(list((out / "val").rglob("*.png"))) == 359


def test_fuse_prints_the_verification_and_writes_both_files(tmp_path, tiny_checkpoint):
    out = tmp_path / "tiny-deploy.pth"
    result = invoke("fuse", tiny_checkpoint.path, "--out", out)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "loaded vanillanet_5" in text and "train form" in text
    assert "random inputs: max abs" in text and "top-1 agreement 100.0%" in text
    assert "real inputs:   max abs" in text                # the val split it was trained on
    assert "INEXACT" not in text
    assert out.exists() and Path(f"{out}.json").exists()
    assert f"wrote {out} and {out}.json" in text
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["exact"] is True and report["source_form"] == "train"
    assert report["random_inputs"]["rel_err"] < 1e-5 and report["real_inputs"]["rel_err"] < 1e-5
    assert report["params_deploy"] < report["params_train"]
    assert load_checkpoint(out).form == "deploy"


def test_fuse_refuses_a_net_mid_schedule_unless_allowed(tmp_path, tiny_checkpoint):
    ck = load_checkpoint(tiny_checkpoint.path)
    ck.model.act_learn = 0.5
    half = save_checkpoint(ck.model, tmp_path / "half.pth", meta={"input_size": 32})
    out = tmp_path / "half-deploy.pth"
    refused = invoke("fuse", half, "--out", out)
    assert refused.exit_code == 2
    assert "act_learn is 0.5" in refused.output and "hint:" in refused.output
    assert not out.exists()
    allowed = invoke("fuse", half, "--out", out, "--allow-inexact")
    assert allowed.exit_code == 0, allowed.output
    assert "INEXACT fusion at act_learn 0.5" in allowed.output and out.exists()
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["exact"] is False and report["random_inputs"]["rel_err"] > 1e-3


def test_info_json():
    result = invoke("info", "vanillanet_5", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["variant"] == "vanillanet_5" and info["input_size"] == 224
    assert round(info["params_deploy"] / 1e6, 1) == 15.5
    assert round(info["params_train"] / 1e6, 2) == 22.33
    assert abs(info["macs"] / 5.2e9 - 1) < 0.01
    assert info["published"]["params_m"] == 15.5 and info["depth"] == 5
    assert len(info["layers"]) > 5


def test_info_text_and_checkpoint_file(tiny_checkpoint):
    text = invoke("info", "vanillanet_5", "--width", "0.25", "--input-size", "64")
    assert text.exit_code == 0 and "at 64x64, depth 5" in text.output and "MACs" in text.output
    result = invoke("info", tiny_checkpoint.path, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["input_size"] == 32 and info["num_classes"] == 10 and info["form"] == "train"
    assert info["params_train"] > info["params_deploy"]


def test_missing_checkpoint_exits_2_with_a_hint(tmp_path):
    result = invoke("fuse", tmp_path / "missing.pth", "--out", tmp_path / "x.pth")
    assert result.exit_code == 2
    assert "missing.pth" in result.output and "not found" in result.output
    assert "hint" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.pth").exists()


def test_other_errors_exit_2_with_a_hint(tmp_path, digits_dir):
    small = invoke("info", "vanillanet_5", "--input-size", "16")
    assert small.exit_code == 2 and "hint" in small.output and "32" in small.output
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage" * 50)
    bad = invoke("fuse", junk, "--out", tmp_path / "y.pth")
    assert bad.exit_code == 2 and "hint" in bad.output and "junk.pth" in bad.output
    decay = invoke("train", "--data", digits_dir, "--out", tmp_path / "t.pth", "--epochs", "2",
                   "--decay-epochs", "3")
    assert decay.exit_code == 2 and "decay_epochs" in decay.output and "hint" in decay.output
    unknown = invoke("info", "vanillanet_99")         # neither a variant nor an existing file
    assert unknown.exit_code == 2 and "vanillanet_99" in unknown.output and "hint" in unknown.output


def test_usage_errors_are_not_tracebacks():
    result = invoke("fuse")
    assert result.exit_code == 2 and "Missing argument" in result.output
    result = invoke("info", "vanillanet_5", "--input-size", "abc")
    assert result.exit_code == 2 and "Traceback" not in result.output
