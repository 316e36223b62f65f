"""Folders we did not make, and files in folders we did: never deleted, replaced or cleaned.

Real CLI processes on real folders: a user's folder given as --out, a user's file inside an
artifact folder of ours, users' files whose names look like our temporaries.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vanillanet_edge.fileio import OWNED_MARK

CLI = str(Path(sys.executable).with_name("vanillanet-edge"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    return res


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _users_folder(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    (mine / "tiny-onnx-fp32").mkdir(parents=True)
    (mine / "tiny-onnx-fp32" / "precious.txt").write_text("a user's")
    (mine / "state.json").write_text('{"mine": true}')
    (mine / ".lock").write_text("a user's lock")
    return mine


@pytest.mark.parametrize("command", ["convert", "run", "calibrate", "report", "baseline", "tune"])
def test_an_output_folder_we_did_not_make_is_refused_untouched(tmp_path, tiny_checkpoint, command):
    mine = _users_folder(tmp_path)
    before = _snapshot(mine)
    ckpt, data = tiny_checkpoint.path, tiny_checkpoint.data
    args = {"convert": ["convert", ckpt, "--target", "onnx", "--out", mine],
            "run": ["run", "--out", mine],
            "calibrate": ["calibrate", ckpt, "--data", data / "train", "--out", mine],
            "report": ["report", tmp_path, "--out", mine],
            "baseline": ["baseline", "resnet18", "--target", "onnx", "--input-size", "32", "--out", mine],
            "tune": ["tune", ckpt, "--target", "onnx", "--precision", "fp32", "--out", mine]}[command]
    res = run_cli(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "was not made by vanillanet-edge" in res.stderr and "hint:" in res.stderr
    assert _snapshot(mine) == before
    assert sorted(p.name for p in mine.iterdir()) == [".lock", "state.json", "tiny-onnx-fp32"]


def test_an_output_path_that_is_a_file_is_refused(tmp_path, tiny_checkpoint):
    target = tmp_path / "notes.txt"
    target.write_text("a user's")
    res = run_cli("convert", tiny_checkpoint.path, "--target", "onnx", "--out", target)
    assert res.returncode == 2 and ("is not a folder" in res.stderr or "is a file" in res.stderr), res.stderr
    assert target.read_text() == "a user's"


def test_files_a_user_put_into_our_folders_are_left_alone(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    first = run_cli("convert", tiny_checkpoint.path, "--target", "onnx", "--out", out)
    assert first.returncode == 0, first.stderr
    [artifact] = [p for p in out.iterdir() if p.is_dir()]
    assert (out / OWNED_MARK).is_file() and (artifact / OWNED_MARK).is_file()
    # Look-alikes of our temporaries, beside the artifact, are a user's files.
    lookalikes = [out / ".notes.old-2024", out / ".movie.mkv.partial-99999",
                  out / f".{artifact.name}.old-0123456789abcdef"]
    for p in lookalikes:
        p.write_text("a user's")
    again = run_cli("convert", tiny_checkpoint.path, "--target", "onnx", "--out", out)
    assert again.returncode == 0, again.stderr          # our own artifact is replaced
    assert all(p.read_text() == "a user's" for p in lookalikes)
    # A file put inside our artifact folder: the folder is no longer only ours, so it stays.
    (artifact / "precious.txt").write_text("a user's")
    before = _snapshot(artifact)
    third = run_cli("convert", tiny_checkpoint.path, "--target", "onnx", "--out", out)
    assert third.returncode != 0 and "precious.txt" in third.stdout + third.stderr
    assert _snapshot(artifact) == before
    assert all(p.read_text() == "a user's" for p in lookalikes)


def test_an_empty_folder_becomes_ours_and_a_second_run_reuses_it(tmp_path, tiny_checkpoint):
    out = tmp_path / "empty"
    out.mkdir()
    assert run_cli("convert", tiny_checkpoint.path, "--target", "onnx", "--out", out).returncode == 0
    assert (out / OWNED_MARK).is_file()
    assert run_cli("convert", tiny_checkpoint.path, "--target", "onnx", "--out", out).returncode == 0
