"""The run folder's lock under hostile conditions: leftovers of crashes, real rival processes.

Rivals are real Python processes taking the lock through the same RunDir code.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from vanillanet_edge.errors import VanillaNetEdgeError
from vanillanet_edge.fileio import claim_folder
from vanillanet_edge.pipeline.rundir import RunDir, RunLockedError

HOLDER = """
import sys, time
from vanillanet_edge.pipeline.rundir import RunDir
with RunDir(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(600)
"""

FORKING_HOLDER = """
import os, sys, time
from vanillanet_edge.pipeline.rundir import RunDir
with RunDir(sys.argv[1]):
    child = os.fork()              # as a library's helper process does, without exec
    if child == 0:                 # fork() has returned here: the at-fork handlers ran
        print(os.getpid(), flush=True)
        time.sleep(600)
        os._exit(0)
    time.sleep(600)
"""

RACER = """
import sys, time
from pathlib import Path
from vanillanet_edge.pipeline.rundir import RunDir, RunLockedError
folder, go = sys.argv[1], Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
try:
    with RunDir(folder):
        print("won", flush=True)
        time.sleep(1.0)          # the others try while this one holds it
except RunLockedError as exc:
    print("locked", flush=True)
"""


PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}


@pytest.mark.parametrize("leftover", [b"", b"\0\0\0\0", b"{\"pid\": 12", b"garbage \xff\xfe",
                                      b'{"pid": 0, "host": "x"}', b"[1, 2, 3]"])
def test_a_lock_file_left_by_a_crash_does_not_block_the_folder(tmp_path, leftover):
    claim_folder(tmp_path, "run folder")              # a run folder of ours, then a crash
    (tmp_path / ".lock").write_bytes(leftover)
    with RunDir(tmp_path) as run:
        info = json.loads((tmp_path / ".lock").read_text())
        assert info == {"pid": os.getpid(), "host": socket.gethostname()}
        run.record("step", "k", [])
    assert (tmp_path / ".lock").read_bytes() == b""      # released: no holder named any more
    with RunDir(tmp_path) as again:
        assert again.done("step", "k") is not None


def test_lock_file_that_is_not_a_file_gives_a_clear_error(tmp_path):
    claim_folder(tmp_path, "run folder")
    (tmp_path / ".lock").mkdir()
    with pytest.raises(VanillaNetEdgeError, match="lock file .*\\.lock"):
        RunDir(tmp_path).__enter__()
    (tmp_path / ".lock").rmdir()
    victim = tmp_path / "victim"
    victim.write_text("do not truncate")
    (tmp_path / ".lock").symlink_to(victim)
    with pytest.raises(VanillaNetEdgeError, match="lock file"):
        RunDir(tmp_path).__enter__()
    assert victim.read_text() == "do not truncate"


def test_a_live_rival_process_is_named_and_its_death_frees_the_folder(tmp_path, python_child):
    holder = python_child(HOLDER, str(tmp_path), **PIPES)
    try:
        assert holder.stdout.readline() == b"holding\n"
        with pytest.raises(RunLockedError) as err:
            RunDir(tmp_path).__enter__()
        message = str(err.value)
        assert f"run folder {tmp_path} is in use by pid {holder.pid} on host {socket.gethostname()}" in message
        assert "hint: wait for that run to finish, or pass another --out" in message
    finally:
        holder.send_signal(signal.SIGKILL)       # no cleanup runs: the kernel drops the flock
        holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid   # its leftover
    with RunDir(tmp_path):
        pass


def test_a_forked_child_outliving_its_killed_parent_does_not_hold_the_lock(tmp_path, python_child):
    holder = python_child(FORKING_HOLDER, str(tmp_path), **PIPES)
    child = int(holder.stdout.readline())
    try:
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} "):
            RunDir(tmp_path).__enter__()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        os.kill(child, 0)                              # the child still runs ...
        with RunDir(tmp_path):                         # ... and the folder is free
            pass
    finally:
        holder.kill()
        holder.wait()
        os.kill(child, signal.SIGKILL)


def test_a_locked_folder_fails_the_cli_with_exit_2(tmp_path, python_child):
    holder = python_child(HOLDER, str(tmp_path / "run"), **PIPES)
    try:
        assert holder.stdout.readline() == b"holding\n"
        # the built-in demo: were the lock not honoured, it would start training
        cli = subprocess.run([sys.executable, "-m", "vanillanet_edge.cli.main", "run",
                              "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert cli.returncode == 2, cli.stderr
    assert f"is in use by pid {holder.pid}" in cli.stderr and "Traceback" not in cli.stderr


def test_processes_racing_for_one_lock_exactly_one_wins(tmp_path, python_child):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    leftovers = [None, "", json.dumps({"pid": int(dead), "host": socket.gethostname()})]
    for attempt in range(6):
        folder, go = tmp_path / f"run{attempt}", tmp_path / f"go{attempt}"
        leftover = leftovers[attempt % 3]              # none, a crash's empty file, a dead holder's
        if leftover is not None:
            claim_folder(folder, "run folder")
            (folder / ".lock").write_text(leftover)
        racers = [python_child(RACER, str(folder), str(go), **PIPES) for _ in range(4)]
        time.sleep(0.3 if attempt else 1.5)            # let them all start and wait at the line
        go.touch()
        ends = [p.communicate(timeout=120) for p in racers]
        outcomes = sorted(out.decode().strip() for out, _ in ends)
        assert outcomes == ["locked", "locked", "locked", "won"], (attempt, [err.decode() for _, err in ends])
