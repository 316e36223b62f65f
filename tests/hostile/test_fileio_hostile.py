"""fileio under hostile conditions: killed writers, racing writers, planted names, hash collisions.

Everything runs through the real code, with real processes where a process matters.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vanillanet_edge.fileio import (
    OWNED_MARK,
    ForeignPathError,
    _temp_name,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    clean_partials,
    pid_alive,
    sha256_path,
    write_json,
)

PARTIAL = re.compile(r"\.(?P<name>.+)\.partial-vne[0-9a-f]{8}(?P<tag>[0-9a-f]{16})")


# -- the content hash of a folder -------------------------------------------------------------

def _tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_folder_hash_cannot_be_forged_by_moving_a_name_into_content(tmp_path):
    # The old encoding (name, NUL, bytes, concatenated) hashed these two folders alike.
    two = _tree(tmp_path / "two", {"a.bin": b"AAAA", "model.onnx": b"BBBB"})
    one = _tree(tmp_path / "one", {"a.bin": b"AAAAmodel.onnx\0BBBB"})
    assert sha256_path(two) != sha256_path(one)


def test_folder_hash_sees_names_and_boundaries_not_location(tmp_path):
    base = sha256_path(_tree(tmp_path / "x", {"a.bin": b"AAAA", "sub/b.bin": b"BBBB"}))
    assert sha256_path(_tree(tmp_path / "elsewhere" / "y", {"a.bin": b"AAAA", "sub/b.bin": b"BBBB"})) == base
    assert sha256_path(_tree(tmp_path / "renamed", {"c.bin": b"AAAA", "sub/b.bin": b"BBBB"})) != base
    assert sha256_path(_tree(tmp_path / "moved", {"a.bin": b"AAA", "sub/b.bin": b"ABBBB"})) != base
    assert sha256_path(_tree(tmp_path / "flat", {"a.bin": b"AAAA", "sub_b.bin": b"BBBB"})) != base
    assert sha256_path(_tree(tmp_path / "swapped", {"a.bin": b"BBBB", "sub/b.bin": b"AAAA"})) != base


def test_file_hash_is_the_plain_sha256_of_its_bytes(tmp_path):
    import hashlib
    f = tmp_path / "model.onnx"
    f.write_bytes(b"weights" * 1000)
    assert sha256_path(f) == hashlib.sha256(b"weights" * 1000).hexdigest()


# -- temporary names ----------------------------------------------------------------------------

def test_temporary_names_are_random_and_created_exclusively(tmp_path):
    final = tmp_path / "out.json"
    # Something planted at the name the old code would have used (.NAME.partial-PID): a link
    # to a file that must not be touched. The writer neither follows nor removes it.
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    planted = tmp_path / f".out.json.partial-{os.getpid()}"
    planted.symlink_to(victim)
    seen = []
    for _ in range(3):
        with atomic_path(final) as tmp:
            m = PARTIAL.fullmatch(tmp.name)
            assert m and m["name"] == "out.json" and tmp.parent == tmp_path
            assert tmp.exists() and tmp != planted
            tmp.write_text("new")
            seen.append(m["tag"])
    assert len(set(seen)) == 3
    assert final.read_text() == "new" and victim.read_text() == "keep me" and planted.is_symlink()
    with atomic_path(tmp_path / "folder", is_dir=True) as tmp:
        assert PARTIAL.fullmatch(tmp.name) and tmp.is_dir()


def test_published_files_keep_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.md", "# hi\n")
        with atomic_path(tmp_path / "pkg", is_dir=True) as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "pkg").stat().st_mode & 0o777 == 0o755


def test_atomic_write_helpers(tmp_path):
    atomic_write_text(tmp_path / "r.md", "héllo\n")
    atomic_write_bytes(tmp_path / "r.bin", b"\0\1")
    assert (tmp_path / "r.md").read_bytes() == "héllo\n".encode() and (tmp_path / "r.bin").read_bytes() == b"\0\1"
    atomic_write_text(tmp_path / "r.md", "again")
    assert (tmp_path / "r.md").read_text() == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.bin", "r.md"]


def test_replacing_across_kinds_is_refused_and_leaves_no_leftovers(tmp_path):
    # A folder never replaces a file, nor a file a folder: either would delete what is there.
    final = tmp_path / "thing"
    write_json(final, {"v": 1})
    with pytest.raises(ForeignPathError, match="not a folder vanillanet-edge wrote"):
        with atomic_path(final, is_dir=True) as tmp:
            (tmp / "a").write_text("1")
    assert json.loads(final.read_text()) == {"v": 1}
    folder = tmp_path / "folder"
    with atomic_path(folder, is_dir=True) as tmp:       # ours, marked with what it holds
        (tmp / "a").write_text("1")
    with atomic_path(folder, is_dir=True) as tmp:       # so it may be replaced by ours
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in folder.iterdir()) == [OWNED_MARK, "b"]
    with pytest.raises(ForeignPathError, match="is a folder"):
        write_json(folder, [2])
    assert (folder / "b").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "thing"]


def test_data_and_folders_reach_the_disk_before_and_after_the_rename(tmp_path):
    """What survives a power cut is what was fsync'ed: read the real system calls (strace)."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from vanillanet_edge.fileio import atomic_path, atomic_write_text
        d = Path(sys.argv[1])
        atomic_write_text(d / "out.txt", "x")
        with atomic_path(d / "pkg", is_dir=True) as tmp:
            (tmp / "sub").mkdir()
            (tmp / "sub" / "w.bin").write_bytes(b"1")
    """)
    run = subprocess.run(["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
                          sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    if run.returncode and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()[:200]}")
    assert run.returncode == 0, run.stderr
    d = str(tmp_path)
    calls = [re.sub(r"\.partial-vne[0-9a-f]{24}", ".partial", line) for line in run.stderr.splitlines()
             if line.startswith(("fsync(", "rename")) and d in line]
    calls = [re.sub(r"^fsync\(\d+<(.*)>\).*", r"fsync \1", c) for c in calls]
    calls = [re.sub(r'^rename\w*\(.*"(.*)", .*"(.*)".*', r"rename \1 \2", c) for c in calls]
    assert calls == [
        f"fsync {d}/.out.txt.partial", f"fsync {d}",
        f"rename {d}/.out.txt.partial {d}/out.txt", f"fsync {d}",
        f"fsync {d}/.pkg.partial/sub/w.bin", f"fsync {d}/.pkg.partial/sub",
        f"fsync {d}/.pkg.partial/{OWNED_MARK}", f"fsync {d}/.pkg.partial",
        f"fsync {d}", f"rename {d}/.pkg.partial {d}/pkg", f"fsync {d}"]


# -- killed writers -----------------------------------------------------------------------------

SLOW_WRITER = """
import sys, time
from vanillanet_edge.fileio import atomic_path
final, kind = sys.argv[1], sys.argv[2]
with atomic_path(final, is_dir=kind == "dir") as tmp:
    path = tmp / "weights.bin" if kind == "dir" else tmp
    with open(path, "wb") as fh:
        for i in range(10_000):
            fh.write(b"x" * (1 << 16))
            fh.flush()
            if i == 4:
                print("writing", flush=True)
            time.sleep(0.01)
"""


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_writer_killed_mid_write_publishes_nothing_and_is_cleaned(tmp_path, kind, python_child):
    final = tmp_path / ("model.bin" if kind == "file" else "model.mlpackage")
    proc = python_child(SLOW_WRITER, str(final), kind, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"writing\n"
        [partial] = [p for p in tmp_path.iterdir() if PARTIAL.fullmatch(p.name)]
        assert clean_partials(tmp_path) == [] and partial.exists()   # its writer is alive
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not final.exists()
    assert partial.exists()                  # what the crash left ...
    assert clean_partials(tmp_path) == [partial]
    assert list(tmp_path.iterdir()) == []    # ... goes with the next clean


FORKING_WRITER = """
import os, sys, time
from vanillanet_edge.fileio import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    child = os.fork()              # as a library's helper process does, without exec
    if child == 0:                 # fork() has returned here: the at-fork handlers ran
        print(os.getpid(), flush=True)
        time.sleep(600)
        os._exit(0)
    time.sleep(600)
"""


def test_partial_of_a_killed_writer_is_cleaned_though_its_forked_child_lives(tmp_path, python_child):
    writer = python_child(FORKING_WRITER, str(tmp_path / "out.bin"), stdout=subprocess.PIPE)
    child = int(writer.stdout.readline())
    try:
        [partial] = list(tmp_path.iterdir())
        assert clean_partials(tmp_path) == []
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        os.kill(child, 0)                              # the child still runs
        assert clean_partials(tmp_path) == [partial] and list(tmp_path.iterdir()) == []
    finally:
        writer.kill()
        writer.wait()
        os.kill(child, signal.SIGKILL)


def test_left_over_old_copy_is_removed_by_the_next_write_and_by_clean(tmp_path):
    # A crash between moving the previous folder aside and renaming the new one into place
    # (where a swap is not supported) leaves `.NAME.old-vne<check><random>`.
    final = tmp_path / "model.mlpackage"
    for _ in range(2):
        old = _temp_name(final, "old")
        (old / "sub").mkdir(parents=True)
        (old / "sub" / "w.bin").write_bytes(b"previous")
    # Names that look like ours but are not: the pattern alone, a PID, another name's check.
    forged = _temp_name(tmp_path / "other.bin", "old").name.replace(".other.bin.", ".model.mlpackage.")
    bystanders = [tmp_path / ".model.mlpackage.old-notours", tmp_path / ".other.old-x",
                  tmp_path / ".model.mlpackage.old-4242", tmp_path / ".notes.old-2024", tmp_path / forged]
    for b in bystanders:
        b.write_text("not ours")
    with atomic_path(final, is_dir=True) as tmp:
        (tmp / "w.bin").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.mlpackage", *(b.name for b in bystanders)])
    other = _temp_name(tmp_path / "report.html", "old")
    other.write_text("left by a crash")
    assert clean_partials(tmp_path) == [other]
    assert all(b.exists() for b in bystanders)


def test_clean_partials_leaves_names_that_are_not_ours(tmp_path):
    names = (".notes.partial-draft", "x.partial-123", ".a.partial-", ".b.partial-0123456789ABCDEF",
             ".movie.mkv.partial-99999", ".notes.old-2024", ".model.onnx.partial-0123456789abcdef",
             ".model.onnx.partial-vne0000000000000000000000000")
    for name in names:
        (tmp_path / name).write_text("mine")
    assert clean_partials(tmp_path) == []
    assert len(list(tmp_path.iterdir())) == len(names)


def test_pid_zero_and_negative_are_never_alive():
    assert not pid_alive(0) and not pid_alive(-1) and not pid_alive(2 ** 40)
    assert pid_alive(os.getpid())


# -- racing writers -----------------------------------------------------------------------------

RACER = """
import sys
from pathlib import Path
from vanillanet_edge import fileio
from vanillanet_edge.fileio import atomic_path, clean_partials
final, me, kind, go = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
if kind == "dir-noswap":      # as on a file system without renameat2(RENAME_EXCHANGE)
    fileio._renameat2, kind = False, "dir"
while not go.exists():
    pass
for _ in range(15):
    with atomic_path(final, is_dir=kind == "dir") as tmp:
        path = tmp / "w.bin" if kind == "dir" else tmp
        with open(path, "wb") as fh:
            for _ in range(64):
                fh.write(me.encode() * 4096)
        if kind == "dir":
            (tmp / f"from-{me}").write_text(me)
    clean_partials(final.parent)        # a cleaner running beside live writers removes nothing live
"""


@pytest.mark.parametrize("how", ["file", "dir", "dir-noswap"])
def test_concurrent_writers_of_one_path_end_with_one_complete_version(tmp_path, how, python_child):
    kind = how.split("-")[0]
    final = tmp_path / "out" / "artifact"
    go = tmp_path / "go"
    procs = [python_child(RACER, str(final), me, how, str(go), stderr=subprocess.PIPE) for me in "ABCD"]
    time.sleep(0.5)
    go.touch()
    seen = set()
    while any(p.poll() is None for p in procs):        # every read sees a whole version
        try:
            data = (final / "w.bin" if kind == "dir" else final).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        assert len(data) == 64 * 4096 and len(set(data)) == 1
        seen.add(data[:1])
    errors = [p.stderr.read().decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    data = (final / "w.bin" if kind == "dir" else final).read_bytes()
    assert len(data) == 64 * 4096 and len(set(data)) == 1
    if kind == "dir":
        assert sorted(p.name for p in final.iterdir()) == [OWNED_MARK, "from-" + data[:1].decode(), "w.bin"]
    assert sorted(p.name for p in final.parent.iterdir()) == [OWNED_MARK, "artifact"]   # no partial, no .old
