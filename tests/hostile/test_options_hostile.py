"""Hostile numbers, paths and files on the command line and in the pipeline file.

Every numeric option of every command is range-checked while the arguments are parsed (nan, inf,
negative, zero where zero means nothing, absurdly large): exit 2 naming the option, never a
traceback, nothing written. Every numeric key of the pipeline file likewise, before the run
folder is touched (no toolchain.log). A folder --out naming a file, a file output naming a folder
or a device, and paths below a file are refused at parsing. A file the user names is replaced
only with --force, and the run's toolchain.log is never written through a planted link.

The option cases are generated from the commands themselves, so a new numeric option without a
range fails `test_every_numeric_option_has_a_range`. Most cases run through the in-process `main`
(click's CliRunner: no process start each); the cases that need quiet mode (toolchain.log) start
the real `vanillanet-edge`.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vanillanet_edge import limits
from vanillanet_edge.cli.main import main
from vanillanet_edge.cli.options import Number, OutputPath
from vanillanet_edge.errors import VanillaNetEdgeError
from vanillanet_edge.pipeline.config import SCHEMA, ConfigError, validate

CLI = str(Path(sys.executable).with_name("vanillanet-edge"))


def invoke(*args) -> click.testing.Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(res, *names: str) -> None:
    """Exit 2, click's or our error, no traceback, and each of `names` in the message."""
    text = res.output
    assert res.exit_code == 2, (res.exit_code, text, res.exception)
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in text
    for name in names:
        assert name in text, (name, text)


def all_commands(group: click.Group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


COMMANDS = dict(all_commands(main))


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict:
    """An existing folder, file and image to name where a command needs them; nothing is read."""
    root = tmp_path_factory.mktemp("places")
    (root / "dir").mkdir()
    (root / "file.txt").write_text("mine\n")
    (root / "img.png").write_bytes(b"not really a png")
    return {"dir": root / "dir", "file": root / "file.txt", "img": root / "img.png", "root": root}


def base_args(path: tuple, p: dict, out: Path) -> list:
    """Arguments that get `path` past parsing (required options given); `out` is where it would write."""
    d, f = p["dir"], p["file"]
    return {
        ("data", "digits"): ["data", "digits", out],
        ("train",): ["train", "--data", d, "--out", out / "t.pth"],
        ("fuse",): ["fuse", f, "--out", out / "d.pth"],
        ("convert",): ["convert", f, "--target", "onnx", "--out", out],
        ("calibrate",): ["calibrate", f, "--data", d, "--out", out],
        ("info",): ["info", "vanillanet_5"],
        ("bench",): ["bench", d],
        ("eval",): ["eval", d, "--data", d],
        ("classify",): ["classify", d, p["img"]],
        ("profile",): ["profile", d],
        ("report",): ["report", d, "--out", out],
        ("baseline",): ["baseline", "resnet18", "--target", "onnx", "--out", out],
        ("tune",): ["tune", "vanillanet_5", "--out", out],
        ("recommend",): ["recommend", "--budget-ms", "5", "--out", out],
        ("run",): ["run", "--out", out],
        ("init",): ["init", out / "p.toml"],
        ("devices", "check"): ["devices", "check", "--devices", out / "none.toml"],
        ("devices", "clean"): ["devices", "clean", "x", "--devices", out / "none.toml"],
        ("devices", "example"): ["devices", "example"],
    }[path]


NUMERIC = [(path, prm) for path, cmd in COMMANDS.items() for prm in cmd.params
           if isinstance(prm, click.Option) and isinstance(prm.type, Number)]


def bad_values(rng: limits.Range) -> list[str]:
    """Values outside `rng`: below, above, not finite, not a number, absurd."""
    low = rng.low if rng.low_open else (rng.low - 1 if rng.kind is int else rng.low - max(abs(rng.low), 1) * 0.5)
    vals = [repr(low) if rng.kind is float else str(low), str(rng.high * 10 + 1), "1" + "0" * 30,
            "nan", "inf", "-inf", "abc", "", "-1e400"]
    if rng.kind is int:
        vals += ["1.5", "2e3", "true"]
    if rng.low > 0 or rng.low_open:
        vals += ["0", "-1"]
    return [v for v in vals if v not in [str(s) for s in rng.sentinels]]


def test_every_numeric_option_has_a_range():
    """No command takes a plain int/float (or click's ranges, which let nan through)."""
    loose = [f"{' '.join(path)} {prm.opts[0]}" for path, cmd in COMMANDS.items() for prm in cmd.params
             if isinstance(prm.type, (click.types.IntParamType, click.types.FloatParamType))]
    assert loose == []
    names = {f"{' '.join(path)} {prm.opts[0]}" for path, prm in NUMERIC}
    assert {"eval --limit", "bench --seconds", "bench --rounds", "bench --threads", "info --width",
            "train --lr", "convert --max-drop", "tune --batch", "recommend --budget-ms", "profile --top",
            "report --peak-seconds", "eval --ray-workers", "data digits --seed"} <= names


@pytest.mark.parametrize("path, prm", NUMERIC, ids=[f"{' '.join(p)} {o.opts[0]}" for p, o in NUMERIC])
def test_bad_numbers_are_refused_at_parsing(path, prm, places, tmp_path):
    out = tmp_path / "out"
    for value in bad_values(prm.type.rng):
        # appended last: a repeated option's last value is the one taken (recommend's --budget-ms)
        res = invoke(*base_args(path, places, out), prm.opts[0], value)
        assert_refused(res, prm.opts[0])
        assert not out.exists(), (path, prm.opts[0], value)
    # its bounds are accepted (parsing only: Number.convert, as click calls it)
    for edge in (prm.type.rng.high, prm.type.rng.low):
        if edge == prm.type.rng.low and prm.type.rng.low_open:
            continue
        assert prm.type.convert(str(edge), prm, None) == edge


@pytest.mark.parametrize("command", [("bench",), ("eval",), ("classify",), ("profile",)])
def test_numeric_runner_settings_are_range_checked(command, places, tmp_path):
    for value in ("-3", "0", "nan", "abc", "", "99999999999"):
        res = invoke(*base_args(command, places, tmp_path / "o"), "--set", f"threads={value}")
        assert_refused(res, "--set", "threads")
    assert_refused(invoke(*base_args(command, places, tmp_path / "o"), "--set", "=1"), "--set")


# -- output paths -------------------------------------------------------------------------------

OUTPUTS = [(path, prm) for path, cmd in COMMANDS.items() for prm in cmd.params if isinstance(prm.type, OutputPath)]


def test_every_output_path_is_checked():
    named = {f"{' '.join(path)} {prm.name}" for path, prm in OUTPUTS}
    assert {"data digits out", "train out", "fuse out", "convert out", "calibrate out", "bench save",
            "eval save", "profile save", "report out", "baseline out", "tune out", "recommend out",
            "run out", "init path"} <= named
    loose = [f"{' '.join(path)} {prm.name}" for path, cmd in COMMANDS.items() for prm in cmd.params
             if prm.name in ("out", "save") and not isinstance(prm.type, OutputPath)]
    assert loose == []


def _with_output(path: tuple, prm, places, value) -> list:
    args = base_args(path, places, places["root"] / "unused")
    if isinstance(prm, click.Argument):             # data digits OUT, init PATH: the first argument after the name
        return [*path, value, *args[len(path) + 1:]]
    opt = prm.opts[0]
    if opt in args:
        i = args.index(opt)
        return [*args[:i], opt, value, *args[i + 2:]]
    return [*args, opt, value]


@pytest.mark.parametrize("path, prm", OUTPUTS, ids=[f"{' '.join(p)} {o.name}" for p, o in OUTPUTS])
def test_outputs_that_cannot_be_written_are_refused_at_parsing(path, prm, places, tmp_path):
    file = tmp_path / "a-file"
    file.write_text("mine\n")
    link = tmp_path / "broken"
    link.symlink_to(tmp_path / "nowhere")
    cases = [(file / "below", "is not a folder"), ("", "empty path")]
    if prm.type.folder:
        cases += [(file, "is a file"), (link, "broken symbolic link")]
    else:
        cases += [(places["dir"], "is a directory"), ("/dev/null", "not a regular file")]
    for value, why in cases:
        assert_refused(invoke(*_with_output(path, prm, places, value)), why)
    assert file.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "broken"]
    assert os.path.exists("/dev/null") and not Path("/dev/null").is_file()


@pytest.mark.parametrize("path, extra", [(("bench",), []), (("eval",), []), (("profile",), []), (("init",), []),
                                         (("train",), [])])
def test_named_files_are_replaced_only_with_force(path, extra, places, tmp_path):
    target = tmp_path / ("p.toml" if path == ("init",) else "t.pth" if path == ("train",) else "r.json")
    target.write_text("not ours\n")
    if path == ("init",):
        args = ["init", target]
    elif path == ("train",):
        args = ["train", "--data", places["dir"], "--out", target]
    else:
        args = [*base_args(path, places, tmp_path / "o"), "--save", target]
    res = invoke(*args, *extra)
    assert_refused(res, f"{target} exists; pass --force to replace it")
    assert target.read_text() == "not ours\n"
    if path == ("init",):                         # the one of these that needs no model: replaced with --force
        res = invoke(*args, "--force")
        assert res.exit_code == 0, res.output
        assert "[bench]" in target.read_text()


def test_fuse_out_is_refused_onto_an_existing_file_and_replaced_with_force(tiny_checkpoint, tmp_path):
    from vanillanet_edge.model.checkpoint import load_checkpoint

    out = tmp_path / "mine.pth"
    out.write_bytes(b"my own file")
    res = invoke("fuse", tiny_checkpoint.path, "--out", out)
    assert_refused(res, f"{out} exists; pass --force to replace it")
    assert out.read_bytes() == b"my own file" and not Path(f"{out}.json").exists()
    out.unlink()
    Path(f"{out}.json").write_text("{}")             # its report's name alone is taken: refused too
    assert_refused(invoke("fuse", tiny_checkpoint.path, "--out", out), f"{out}.json exists")
    assert not out.exists() and Path(f"{out}.json").read_text() == "{}"
    out.write_bytes(b"my own file")
    res = invoke("fuse", tiny_checkpoint.path, "--out", out, "--force")
    assert res.exit_code == 0, res.output
    assert load_checkpoint(out).form == "deploy"
    assert json.loads(Path(f"{out}.json").read_text())["exact"] is True


# -- the pipeline file ----------------------------------------------------------------------------

NUMERIC_KEYS = [(section, name, key) for section, keys in SCHEMA.items() for name, key in keys.items()
                if key.type in (int, float)]


def test_every_numeric_key_has_a_range():
    assert [f"{s}.{n}" for s, n, k in NUMERIC_KEYS if k.range is None] == []
    assert len(NUMERIC_KEYS) >= 20


@pytest.mark.parametrize("section, name, key", NUMERIC_KEYS, ids=[f"{s}.{n}" for s, n, _ in NUMERIC_KEYS])
def test_bad_numbers_in_the_pipeline_file_are_refused(section, name, key, tmp_path):
    rng = key.range
    values: list = [rng.high * 10 + 1, 10 ** 30, -10 ** 30, -5, "7", True, [1]]
    if rng.kind is float:
        values += [math.nan, math.inf, -math.inf]
    else:
        values += [2.5]
    if rng.low > 0 or rng.low_open:
        values += [0, -1]
    for value in values:
        if value in rng.sentinels and not isinstance(value, bool):
            continue
        with pytest.raises(ConfigError, match=f"{section}.{name}"):
            validate({section: {name: value}}, tmp_path)
    assert not any(tmp_path.iterdir())


def _toml(section: str, text: str) -> str:
    return f"[{section}]\n{text}\n[verdict]\nmodels = []\n"


@pytest.mark.parametrize("section, line", [("eval", "limit = -5"), ("bench", "threads = -3"),
                                           ("model", "width = nan"), ("train", "lr = inf"),
                                           ("calibration", "max_drop = -0.5"), ("bench", "rounds = 0"),
                                           ("convert", "batch = 100000000000")])
def test_run_refuses_a_bad_pipeline_file_and_writes_nothing(section, line, tmp_path):
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(_toml(section, line))
    out = tmp_path / "run"
    res = invoke("run", pipeline, "--out", out)
    assert_refused(res, f"{section}.{line.split()[0]}", "hint")
    assert not out.exists()


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run([CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    return res


def test_the_real_command_writes_no_toolchain_log_for_a_refused_file(tmp_path):
    """Quiet mode (the real process, no -v) is where toolchain.log is opened: a refused file, in a
    new folder or in an existing run folder, leaves no log (and no folder) behind."""
    pipeline = tmp_path / "p.toml"
    pipeline.write_text(_toml("eval", "limit = -5"))
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    res = _cli("run", pipeline, "--out", fresh, cwd=tmp_path)
    assert res.returncode == 2 and "eval.limit" in res.stderr, res.stderr
    assert not fresh.exists()
    pipeline.write_text(_toml("bench", "threads = -3"))
    res = _cli("run", pipeline, "--out", existing, "--only", "bench", cwd=tmp_path)
    assert res.returncode == 2 and "bench.threads" in res.stderr, res.stderr
    assert list(existing.iterdir()) == []


def test_toolchain_log_planted_as_a_link_is_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("someone else's file\n")
    out = tmp_path / "run"
    from vanillanet_edge.fileio import claim_folder
    claim_folder(out, "run folder")                   # our run folder, with a link planted in it
    (out / "toolchain.log").symlink_to(outside)
    pipeline = tmp_path / "p.toml"
    pipeline.write_text('[convert]\ntargets = ["onnx"]\nprecisions = ["fp32"]\n[train]\nepochs = 1\n'
                        'decay_epochs = 1\n[eval]\nlimit = 10\n[bench]\nruns = 1\nrounds = 1\nwarmup = 0\n'
                        '[verdict]\nmodels = []\n')
    res = _cli("run", pipeline, "--out", out, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "toolchain.log" in res.stderr and "symbolic link" in res.stderr and "hint" in res.stderr
    assert outside.read_text() == "someone else's file\n"
    assert (out / "toolchain.log").is_symlink()
    assert not (out / "state.json").exists()          # refused before any stage


# -- the rest of the class: API callers, devices.toml, the console line of a failed record ----

def test_the_api_checks_the_same_ranges(tmp_path):
    from vanillanet_edge import api
    from vanillanet_edge.devices.latency import BenchSettings

    cases = [(lambda: api.model_info("vanillanet_5", width=math.nan), "width"),
             (lambda: api.model_info("vanillanet_5", num_classes=0), "num_classes"),
             (lambda: api.evaluate([], tmp_path, limit=-5), "limit"),
             (lambda: api.bench([], BenchSettings(rounds=0)), "rounds"),
             (lambda: api.bench([], BenchSettings(seconds=math.inf)), "seconds"),
             (lambda: api.bench([], BenchSettings(options={"threads": -3})), "threads"),
             (lambda: api.profile([], runs=0), "runs"),
             (lambda: api.make_digits(tmp_path / "d", size=0), "size"),
             (lambda: api.calibrate(tmp_path / "x.pth", tmp_path, tmp_path / "c", samples=-1), "samples"),
             (lambda: api.fuse_checkpoint(tmp_path / "x.pth", tmp_path / "y.pth", input_size=10 ** 9), "input_size"),
             (lambda: api.recommend([], tmp_path / "r", math.nan), "budget_ms")]
    for call, name in cases:
        with pytest.raises(limits.RangeError, match=name) as err:
            call()
        assert isinstance(err.value, VanillaNetEdgeError) and "got" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_input_side_limit_is_the_models():
    from vanillanet_edge.model.vanillanet import MAX_INPUT_SIZE

    assert limits.MAX_INPUT_SIZE == MAX_INPUT_SIZE == limits.INPUT_SIZE.high


@pytest.mark.parametrize("line, name", [("connect_timeout_s = nan", "connect_timeout_s"),
                                        ("run_timeout_s = -1", "run_timeout_s"),
                                        ("run_timeout_s = 1e308", "run_timeout_s"),
                                        ('url = "ssh://pi@10.0.0.1:0"', "port 0"),
                                        ('url = "ssh://pi@10.0.0.1:99999"', "bad port"),
                                        ("options = { threads = -3 }", "threads")])
def test_bad_numbers_in_the_devices_file_are_refused(line, name, tmp_path):
    devices = tmp_path / "devices.toml"
    url = "" if line.startswith("url") else 'url = "ssh://pi@10.0.0.1"\n'
    devices.write_text(f"[devices.pi]\n{url}{line}\n")
    assert_refused(invoke("devices", "check", "pi", "--devices", devices), name)


def test_a_failed_record_always_says_why():
    from vanillanet_edge.cli.measure_cli import failure_reason

    assert failure_reason({"ok": False, "status": "failed"})          # what rounds=0 used to print as ""
    assert failure_reason({"ok": False, "error": "boom"}) == "boom"
