"""Hostile artifact folders (issue 23, items 2-4 and 8): manifests whose paths lead outside the
folder, model files swapped, cut or replaced by random bytes, and input contracts that are out
of bounds or contradict themselves. Each goes through the real code and the real CLI (bench's
workers, the device runner as a process, a device over a transport that is a local shell):
exit 2 and a message that says what to do, or a clean failed record; never a traceback, never
a silently wrong number, nothing read outside the artifact folder.

The artifacts are the session's tiny net converted once (ONNX fp32, LiteRT fp32: conftest.py);
each test edits its own copy.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from devices_toml import write_devices

from vanillanet_edge import manifest as manifest_mod
from vanillanet_edge.cli.main import main
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.errors import ArtifactDamagedError
from vanillanet_edge.fileio import sha256_path, size_bytes
from vanillanet_edge.manifest import MANIFEST_NAME, ManifestError, read_manifest, verified_artifact
from vanillanet_edge.remote import bundle, transport
from vanillanet_edge.remote.transport import LocalTransport

CLI = str(Path(sys.executable).with_name("vanillanet-edge"))


# ------------------------------------------------------------------ helpers

@pytest.fixture(scope="module")
def sources(tiny_artifacts, tiny_tflite):
    return {"onnx": tiny_artifacts / "tiny-onnx-fp32", "tflite": Path(tiny_tflite.folder)}


@pytest.fixture(scope="module")
def image(digits_dir) -> Path:
    return sorted((digits_dir / "val" / "7").glob("*.png"))[0]


def copy(src: Path, where: Path) -> Path:
    dst = where / "arts" / src.name
    shutil.copytree(src, dst)
    return dst


def load_json(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())


def save_json(folder: Path, data: dict) -> None:
    (folder / MANIFEST_NAME).write_text(json.dumps(data, indent=2))


def rehash(folder: Path) -> None:
    """Make the manifest's file entries match the folder's files again, as the writer would:
    the runtime then sees whatever bytes are there (the checks past the sha256)."""
    m = load_json(folder)
    files = {p.name: {"sha256": sha256_path(p), "size_bytes": size_bytes(p)}
             for p in sorted(folder.iterdir()) if p.name != MANIFEST_NAME}
    main_file = m["artifact"]["file"]
    m["artifact"].update(sha256=files[main_file]["sha256"], size_bytes=sum(f["size_bytes"] for f in files.values()),
                         files=files)
    save_json(folder, m)


def model_file(folder: Path) -> Path:
    return folder / load_json(folder)["artifact"]["file"]


def cli(*args) -> tuple[int, str]:
    """The CLI in this process: (exit code, everything it printed). An exception that escaped
    the CLI (a traceback for a user) fails the test."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback
        pytest.fail("uncaught " + "".join(traceback.format_exception(res.exception)))
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


def real_cli(*args) -> tuple[int, str]:
    """The installed command in its own process, as a user runs it."""
    res = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    return res.returncode, out


def command(name: str, folder: Path, digits_dir: Path, image: Path) -> list:
    return {"bench": ["bench", folder, "--runs", "2", "--rounds", "1", "--warmup", "0"],
            "eval": ["eval", folder, "--data", digits_dir / "val", "--limit", "20"],
            "classify": ["classify", folder, image]}[name]


def bench_records(folder: Path) -> tuple[int, list[dict], str]:
    """bench's JSON records and its table, each from its own run (workers in fresh processes)."""
    code, out = cli("bench", folder, "--runs", "2", "--rounds", "1", "--warmup", "0", "--json")
    records = json.loads(out[out.index("["):])
    code2, table = cli("bench", folder, "--runs", "2", "--rounds", "1", "--warmup", "0")
    assert code == code2
    return code, records, table


COMMANDS = ["bench", "eval", "classify"]


# ------------------------------------------------------------------ control: the untouched artifacts

def test_untouched_artifacts_pass_every_check_and_run(sources, digits_dir, image, tmp_path):
    for src in sources.values():
        folder = copy(src, tmp_path)
        code, out = cli("classify", folder, image, "--json")
        assert code == 0, out
        assert json.loads(out)["results"][0]["top"][0]["label"] == "7"
    code, out = cli(*command("eval", copy(sources["onnx"], tmp_path / "e"), digits_dir, image), "--json")
    assert code == 0 and json.loads(out[out.index("["):])[0]["top1"] > 0.8, out


def test_the_device_side_digest_is_fileio_sha256_path(sources, tmp_path):
    """manifest.digest (in the device bundle) hashes files and folders (.mlpackage) as the writer did."""
    tree = tmp_path / "pkg.mlpackage"
    (tree / "Data" / "x").mkdir(parents=True)
    (tree / "Manifest.json").write_text("{}")
    (tree / "Data" / "x" / "w.bin").write_bytes(os.urandom(3000))
    for path in (model_file(sources["onnx"]), tree):
        assert manifest_mod.digest(path) == (size_bytes(path), sha256_path(path))
    assert set(manifest_mod.INTERPOLATIONS) == set(__import__("vanillanet_edge.images").images._RESAMPLE)


def test_max_input_size_is_one_number():
    from vanillanet_edge.model import vanillanet
    assert vanillanet.MAX_INPUT_SIZE == manifest_mod.MAX_INPUT_SIZE == 2048


# ------------------------------------------------------------------ 2. paths stay inside the folder

def _outside_copy(folder: Path) -> Path:
    """A valid copy of the model outside the artifact folder: only confinement can refuse it."""
    outside = folder.parent.parent / "outside"
    outside.mkdir(exist_ok=True)
    target = outside / model_file(folder).name
    shutil.copyfile(model_file(folder), target)
    return target


def _point_at(folder: Path, name: str) -> None:
    """artifact.file and its files entry renamed to `name`, hashes and sizes unchanged."""
    m = load_json(folder)
    old = m["artifact"]["file"]
    m["artifact"]["file"] = name
    m["artifact"]["files"] = {(name if k == old else k): v for k, v in m["artifact"]["files"].items()}
    save_json(folder, m)


def escape(kind: str, folder: Path) -> None:
    target = _outside_copy(folder)
    if kind == "dotdot":
        _point_at(folder, f"../../outside/{target.name}")
    elif kind == "dotdot_inside_name":
        _point_at(folder, f"sub/../../../outside/{target.name}")
    elif kind == "absolute":
        _point_at(folder, str(target))
    elif kind == "etc_passwd":
        _point_at(folder, "../../../../../../../etc/passwd")
    elif kind == "symlink_model":               # the file itself is a link out (hashes match)
        model_file(folder).unlink()
        os.symlink(target, model_file(folder))
    elif kind == "symlink_elsewhere":           # a link out anywhere in the folder
        os.symlink(target.parent, folder / "extra")
    elif kind == "manifest_link":
        real = target.parent / "manifest.json"
        shutil.copyfile(folder / MANIFEST_NAME, real)
        (folder / MANIFEST_NAME).unlink()
        os.symlink(real, folder / MANIFEST_NAME)
    elif kind == "companion_dotdot":            # a listed companion file outside (OpenVINO's .bin)
        m = load_json(folder)
        m["artifact"]["files"]["../../outside/" + target.name] = {"sha256": sha256_path(target),
                                                                 "size_bytes": size_bytes(target)}
        m["artifact"]["size_bytes"] += size_bytes(target)
        save_json(folder, m)
    else:
        raise AssertionError(kind)


ESCAPES = ["dotdot", "dotdot_inside_name", "absolute", "etc_passwd", "symlink_model", "symlink_elsewhere",
           "manifest_link", "companion_dotdot"]


@pytest.mark.parametrize("kind", ESCAPES)
def test_paths_leading_outside_the_folder_are_refused_by_every_command(kind, sources, digits_dir, image,
                                                                       tmp_path):
    folder = copy(sources["onnx"], tmp_path)
    escape(kind, folder)
    for name in COMMANDS:
        code, out = cli(*command(name, folder, digits_dir, image))
        assert code == 2, (name, out)
        assert "outside the artifact folder" in out and "hint:" in out, (name, out)


def test_the_installed_cli_refuses_etc_passwd(sources, image, tmp_path):
    folder = copy(sources["tflite"], tmp_path)
    escape("etc_passwd", folder)
    code, out = real_cli("classify", folder, image)
    assert code == 2 and "leads outside the artifact folder" in out, out


class ShellTransport(LocalTransport):
    """This machine's shell used as another machine's: the whole remote path (our folder, the
    runner bundle, the artifact upload, latency rounds and `serve`), without SSH."""

    runs_here = False
    url_form = "shell://NAME"


@pytest.fixture
def shell_device(monkeypatch, tmp_path):
    monkeypatch.setitem(transport.TRANSPORTS, "shell", f"{__name__}:ShellTransport")
    workdir = tmp_path / "wd"
    toml = write_devices(tmp_path / "devices.toml", {"b": {"url": "shell://b", "workdir": str(workdir),
                                                           "python": sys.executable}})
    return toml, workdir / "vanillanet-edge"


def test_an_escaping_artifact_is_refused_before_anything_is_sent_to_a_device(shell_device, sources, digits_dir,
                                                                             image, tmp_path):
    toml, own = shell_device
    folder = copy(sources["onnx"], tmp_path)
    escape("dotdot", folder)
    for name in ("bench", "eval"):
        code, out = cli(*command(name, folder, digits_dir, image), "--device", "b", "--devices", toml)
        assert code == 2 and "outside the artifact folder" in out, out
    assert not own.exists()         # the device was not even prepared: nothing sent


def test_a_device_refuses_its_own_copy_when_it_was_tampered_with_there(shell_device, sources, digits_dir,
                                                                       image, tmp_path):
    """The device side checks too: a copy edited on the device (its .complete still matching
    what the host sent) is refused by the device's runner, and the host records why, cleanly."""
    toml, own = shell_device
    folder = copy(sources["onnx"], tmp_path)
    code, out = cli(*command("bench", folder, digits_dir, image), "--device", "b", "--devices", toml, "--json")
    assert code == 0, out
    [there] = list((own / "artifacts").glob(f"*/{folder.name}"))
    escape("dotdot", there)
    code, out = cli(*command("bench", folder, digits_dir, image), "--device", "b", "--devices", toml, "--json")
    [rec] = json.loads(out[out.index("["):])
    assert code == 1 and not rec["ok"] and "outside the artifact folder" in rec["error"], rec
    shutil.rmtree(there)
    code, out = cli(*command("bench", folder, digits_dir, image), "--device", "b", "--devices", toml, "--json")
    assert code == 0, out                       # sent again, whole
    [there] = list((own / "artifacts").glob(f"*/{folder.name}"))
    model = model_file(there)
    model.write_bytes(bytes(255 - b for b in model.read_bytes()))
    for name in ("bench", "eval"):
        code, out = cli(*command(name, folder, digits_dir, image), "--device", "b", "--devices", toml, "--json")
        [rec] = json.loads(out[out.index("["):])
        assert code == 1 and not rec["ok"] and "damaged" in rec["error"] and "re-convert" in rec["error"], rec
        assert "Traceback" not in rec["error"]


def _runner(tmp_path: Path) -> Path:
    pyz = tmp_path / "runner.pyz"
    pyz.write_bytes(bundle.build()[0])
    return pyz


def test_the_device_runner_itself_refuses_escapes_and_damage(sources, tmp_path):
    """remote/runner.py as it runs on a device (the bundle, an isolated interpreter): `serve`
    answers a load with the clean error, `latency` reports it as the round's result."""
    pyz = _runner(tmp_path)
    escaping = copy(sources["onnx"], tmp_path / "a")
    escape("absolute", escaping)
    damaged = copy(sources["tflite"], tmp_path / "b")
    model_file(damaged).write_bytes(model_file(damaged).read_bytes()[:1000])
    for folder, runtime, expect in ((escaping, "onnxruntime", "outside the artifact folder"),
                                    (damaged, "litert", "damaged")):
        load = json.dumps({"op": "load", "artifact": str(folder), "runtime": runtime, "settings": {}}) + "\n"
        res = subprocess.run([sys.executable, "-I", str(pyz), "serve"], input=load.encode(), capture_output=True,
                             timeout=120)
        reply = json.loads(res.stdout.decode().splitlines()[0])
        assert not reply["ok"] and expect in reply["error"] and "hint:" in reply["error"], reply
        assert b"Traceback" not in res.stderr, res.stderr.decode()
        job = {"artifact": str(folder), "runtime": runtime, "settings": {"warmup": 0, "runs": 1, "rounds": 1}}
        res = subprocess.run([sys.executable, "-I", str(pyz), "latency"], input=json.dumps(job).encode(),
                             capture_output=True, timeout=120)
        result = json.loads(res.stdout.decode().splitlines()[-1])
        assert result["status"] == "failed" and expect in result["error"], result
        assert b"Traceback" not in res.stderr, res.stderr.decode()


# ------------------------------------------------------------------ 3. size and sha256

def _swap_weights(folder: Path) -> None:
    """Another valid ONNX model of the same contract: the classifier's rows reversed."""
    import onnx
    from onnx import numpy_helper

    path = model_file(folder)
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.dims and init.dims[0] == 10:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[::-1].copy(), init.name))
    onnx.save(model, str(path))


def damage(kind: str, folder: Path) -> None:
    path = model_file(folder)
    data = path.read_bytes()
    if kind == "swapped":
        _swap_weights(folder)
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "missing":
        path.unlink()
    else:
        raise AssertionError(kind)


DAMAGE = [("onnx", "swapped"), ("onnx", "random"), ("onnx", "truncated"), ("onnx", "missing"),
          ("tflite", "random"), ("tflite", "truncated"), ("tflite", "empty")]


def test_a_swapped_model_is_valid_and_gives_other_answers(sources, tmp_path):
    """Control for the swap: without the sha256 check it would be evaluated with no warning."""
    from vanillanet_edge.devices.base import example_input
    from vanillanet_edge.devices.registry import get_runner

    folder = copy(sources["onnx"], tmp_path)
    damage("swapped", folder)
    m = load_json(folder)
    x = example_input(m)
    runner = get_runner("onnxruntime")
    ours = runner.load(model_file(sources["onnx"]), m, threads=1).run_all(x)
    swapped = runner.load(model_file(folder), m, threads=1).run_all(x)
    assert not np.allclose(ours, swapped)


@pytest.mark.parametrize("source,kind", DAMAGE)
def test_damaged_model_files_are_refused_by_every_command(source, kind, sources, digits_dir, image, tmp_path):
    folder = copy(sources[source], tmp_path)
    damage(kind, folder)
    for name in COMMANDS:
        code, out = cli(*command(name, folder, digits_dir, image))
        assert code == 2, (name, out)
        assert "is damaged" in out and "re-convert it with `vanillanet-edge convert`" in out, (name, out)
    if kind == "swapped":
        assert "sha256" in out
    if kind == "truncated":
        assert "bytes, its manifest says" in out


def test_the_check_runs_once_per_process_and_still_sees_a_later_change(sources, tmp_path):
    folder = copy(sources["onnx"], tmp_path)
    m = read_manifest(folder)
    path = verified_artifact(folder, m)
    before = len(manifest_mod._VERIFIED)
    assert verified_artifact(folder, m) == path and len(manifest_mod._VERIFIED) == before   # not hashed again
    data = path.read_bytes()
    path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])         # same size, one bit
    with pytest.raises(ArtifactDamagedError, match="sha256"):
        verified_artifact(folder, m)


@pytest.mark.parametrize("source,kind", [("onnx", "random"), ("onnx", "truncated"), ("tflite", "random"),
                                         ("tflite", "truncated")])
def test_bytes_a_runtime_cannot_load_are_a_damaged_artifact_not_a_traceback(source, kind, sources, digits_dir,
                                                                            image, tmp_path):
    """The manifest re-hashed over the broken file: the runtime itself gets the bytes
    (InvalidProtobuf, "not a valid Flatbuffer"), and its failure reads as damage."""
    folder = copy(sources[source], tmp_path)
    damage(kind, folder)
    rehash(folder)
    code, out = cli(*command("classify", folder, digits_dir, image))
    assert code == 2 and "is damaged" in out and "cannot load it" in out and "re-convert" in out, out
    code, out = cli(*command("eval", folder, digits_dir, image), "--json")
    [rec] = json.loads(out[out.index("["):])
    assert code == 1 and not rec["ok"] and "is damaged" in rec["error"], rec
    if kind == "random":
        code, records, table = bench_records(folder)
        [rec] = records
        assert code == 1 and rec["status"] == "failed" and "is damaged" in rec["error"], rec
        assert "re-convert" in rec["error"] and "Traceback" not in rec["error"] and 'File "' not in rec["error"]
        assert "FAILED: artifact" in table and "is damaged" in table and 'File "' not in table, table


def test_the_installed_bench_prints_a_clean_reason_for_an_unloadable_artifact(sources, tmp_path):
    folder = copy(sources["onnx"], tmp_path)
    damage("random", folder)
    rehash(folder)
    code, out = real_cli("bench", folder, "--runs", "2", "--rounds", "1", "--warmup", "0")
    assert code == 1 and "is damaged" in out and "InvalidProtobuf" in out and 'File "' not in out, out


# ------------------------------------------------------------------ 4 and 8. the input contract

def _set(path: str, value):
    def edit(m):
        *parents, last = path.split(".")
        node = m
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


def _drop(path: str):
    def edit(m):
        *parents, last = path.split(".")
        node = m
        for key in parents:
            node = node[key]
        del node[last]
    return edit


def _size(side: int):
    def edit(m):
        m["input"]["shape"] = [1, side, side, 3] if m["input"]["layout"] == "NHWC" else [1, 3, side, side]
        m["preprocessing"].update(crop=side, resize=side)
    return edit


def _all(*edits):
    def edit(m):
        for e in edits:
            e(m)
    return edit


CONTRACT = {
    "input_size_100000": (_size(100000), "from 1 to 2048"),
    "input_size_0": (_size(0), "from 1 to 2048"),
    "crop_over_resize": (_set("preprocessing.crop", 64), "larger than preprocessing.resize"),
    "crop_not_the_input": (_all(_set("preprocessing.crop", 16), _set("preprocessing.resize", 18)),
                           "differs from the input's size"),
    "fewer_labels": (_set("model.labels", ["0", "1", "2"]), "names 3 classes, the model has 10"),
    "more_class_names": (_set("model.class_names", [str(i) for i in range(11)]), "names 11 classes"),
    "labels_not_strings": (_set("model.labels", list(range(10))), "list of strings"),
    "no_mean": (_drop("preprocessing.mean"), "preprocessing.mean is missing"),
    "no_std": (_drop("preprocessing.std"), "preprocessing.std is missing"),
    "zero_std": (_set("preprocessing.std", [0.229, 0.0, 0.225]), "above 0"),
    "negative_std": (_set("preprocessing.std", [-1, 1, 1]), "above 0"),
    "nan_mean": (_set("preprocessing.mean", [float("nan"), 0.4, 0.4]), "3 finite numbers"),
    "infinite_std": (_set("preprocessing.std", [float("inf"), 1, 1]), "3 finite numbers"),
    "two_means": (_set("preprocessing.mean", [0.4, 0.4]), "3 finite numbers"),
    "mean_as_text": (_set("preprocessing.mean", "0.5"), "3 finite numbers"),
    "unknown_interpolation": (_set("preprocessing.interpolation", "lanczos9"), "interpolation"),
    "unknown_preprocessing_key": (_set("preprocessing.rotate", 90), "unknown keys"),
    "no_artifact_file": (_drop("artifact.file"), "artifact.file is missing"),
    "artifact_file_not_text": (_set("artifact.file", 7), "artifact.file is 7"),
    "no_sha256": (_drop("artifact.sha256"), "artifact.sha256"),
    "bad_sha256": (_set("artifact.sha256", "abc"), "64 hex digits"),
    "no_size": (_drop("artifact.size_bytes"), "artifact.size_bytes"),
    "negative_shape": (_set("input.shape", [1, 3, -32, 32]), "from 1 to 2048"),
    "shape_of_three": (_set("input.shape", [3, 32, 32]), "4 whole numbers"),
    "shape_not_a_list": (_set("input.shape", "1x3x32x32"), "4 whole numbers"),
    "float_in_shape": (_set("input.shape", [1, 3, 32.5, 32.5]), "whole number"),
    "bool_in_shape": (_set("input.shape", [True, 3, 32, 32]), "whole number"),
    "four_channels": (_set("input.shape", [1, 4, 32, 32]), "channels"),
    "not_square": (_set("input.shape", [1, 3, 32, 33]), "not square"),
    "batch_0": (_set("input.shape", [0, 3, 32, 32]), "batch"),
    "batch_huge": (_set("input.shape", [10**9, 3, 32, 32]), "batch"),
    "batch_times_size": (_all(_set("input.shape", [1024, 3, 2048, 2048]), _set("preprocessing.crop", 2048),
                              _set("preprocessing.resize", 2048), _set("output.shape", [1024, 10])),
                         "values, over the"),
    "unknown_layout": (_set("input.layout", "NWHC"), "input.layout"),
    "unknown_dtype": (_set("input.dtype", "complex128"), "input.dtype"),
    "unknown_pixels": (_set("input.pixels", "hdr"), "input.pixels"),
    "no_input_name": (_drop("input.name"), "input.name is missing"),
    "zero_classes": (_set("model.num_classes", 0), "model.num_classes"),
    "no_classes": (_drop("model.num_classes"), "model.num_classes"),
    "output_not_the_classes": (_set("output.shape", [1, 1000]), "output.shape"),
    "preprocessing_not_a_dict": (_set("preprocessing", [256, 224]), "preprocessing"),
    "input_not_a_dict": (_set("input", None), "'input'"),
    "schema_as_bool": (_set("schema_version", True), "schema_version"),
}


def _contract_case(case: str, sources, tmp_path) -> Path:
    folder = copy(sources["onnx"], tmp_path)
    m = load_json(folder)
    CONTRACT[case][0](m)
    (folder / MANIFEST_NAME).write_text(json.dumps(m))      # NaN and Infinity as Python's json writes them
    return folder


@pytest.mark.parametrize("case", sorted(CONTRACT))
def test_contract_contradictions_are_refused_when_read(case, sources, image, tmp_path):
    folder = _contract_case(case, sources, tmp_path)
    with pytest.raises(ManifestError) as err:
        read_manifest(folder)
    assert CONTRACT[case][1] in str(err.value) and err.value.hint, str(err.value)
    code, out = cli("classify", folder, image)
    assert code == 2 and CONTRACT[case][1] in out and "hint:" in out, out


@pytest.mark.parametrize("case", ["input_size_100000", "zero_std", "fewer_labels", "no_mean", "crop_over_resize",
                                  "no_artifact_file", "negative_shape", "nan_mean"])
def test_contract_contradictions_stop_bench_and_eval_before_any_work(case, sources, digits_dir, image, tmp_path):
    folder = _contract_case(case, sources, tmp_path)
    for name in ("bench", "eval"):
        code, out = cli(*command(name, folder, digits_dir, image))
        assert code == 2 and CONTRACT[case][1] in out, (name, out)


def test_the_installed_eval_refuses_a_100000_pixel_input_at_once(sources, digits_dir, image, tmp_path):
    folder = _contract_case("input_size_100000", sources, tmp_path)
    code, out = real_cli(*command("eval", folder, digits_dir, image))
    assert code == 2 and "from 1 to 2048" in out, out


def test_a_consistent_edit_the_model_cannot_run_is_refused_at_the_first_run(sources, digits_dir, image, tmp_path):
    """Input size 40 everywhere in the manifest (a valid contract), the model still takes 32: the
    runtime's refusal of the manifest's input reads as a manifest that disagrees with the model."""
    folder = copy(sources["onnx"], tmp_path)
    m = load_json(folder)
    _size(40)(m)
    m["preprocessing"]["resize"] = 46
    save_json(folder, m)
    code, out = cli("classify", folder, image)
    assert code == 2 and "fails to run on an input of shape (1, 3, 40, 40)" in out and "re-convert" in out, out
    code, records, table = bench_records(folder)
    assert code == 1 and "fails to run" in records[0]["error"] and 'File "' not in table, records


def test_non_finite_outputs_are_an_error_not_nan_percent(sources, digits_dir, image, tmp_path):
    """Weights made NaN (manifest re-hashed over them): classify and eval say so instead of
    printing nan% or counting argmax(NaN) as a prediction."""
    import onnx
    from onnx import numpy_helper

    folder = copy(sources["onnx"], tmp_path)
    path = model_file(folder)
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if i.dims and i.dims[0] == 10 and len(i.dims) == 1)
    init.CopyFrom(numpy_helper.from_array(np.full(10, np.nan, np.float32), init.name))
    onnx.save(model, str(path))
    rehash(folder)
    code, out = cli("classify", folder, image)
    assert code == 2 and "not finite numbers" in out and "nan%" not in out, out
    code, out = cli(*command("eval", folder, digits_dir, image), "--json")
    [rec] = json.loads(out[out.index("["):])
    assert code == 1 and "not finite numbers" in rec["error"] and "top1" not in rec, rec


def test_nan_in_the_json_is_refused_where_it_matters_only(sources, tmp_path):
    """Python's json reads NaN; a NaN in a number the harness uses is refused, one elsewhere
    (an old verification figure) is not the contract's business."""
    folder = copy(sources["onnx"], tmp_path)
    m = load_json(folder)
    m["verification"]["rel_err"] = math.nan
    (folder / MANIFEST_NAME).write_text(json.dumps(m))
    assert math.isnan(resolve([folder])[0].manifest["verification"]["rel_err"])
