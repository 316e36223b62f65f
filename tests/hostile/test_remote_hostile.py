"""Hostile devices.toml entries and hostile transfers, fed through the real code against a real
OpenSSH server on loopback (tests/remote/sshd.py): the "device" is this machine over SSH, so
what the device side did can be read straight from the file system.

Issue 12: `devices clean` deleting folders it did not create, ssh option injection through the
URL, cut uploads published as complete, and timed-out rounds left running on the device.
"""
from __future__ import annotations

import io
import secrets
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from devices_toml import device_entry, write_devices

from vanillanet_edge import api
from vanillanet_edge.cli.main import main
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings
from vanillanet_edge.fileio import sha256_path
from vanillanet_edge.remote import bundle
from vanillanet_edge.remote.device import MARKER, Device, write_tar
from vanillanet_edge.remote.devices_file import DeviceConfigError, DeviceSpec, parse_devices
from vanillanet_edge.remote.runner import COMPLETE, content_digest
from vanillanet_edge.remote.ssh import DeviceError, SshClient

QUICK = BenchSettings(warmup=1, runs=4, rounds=1)
CLI = Path(sys.executable).parent / "vanillanet-edge"


def spec_of(entry: dict, name: str = "lo") -> DeviceSpec:
    return parse_devices({"devices": {name: entry}})[name]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The installed `vanillanet-edge` command, as a user runs it."""
    return subprocess.run([str(CLI), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def processes_with(needle: str) -> list[str]:
    """Command lines of live processes (not zombies) that contain `needle`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(s for s in (proc / "status").read_text().splitlines() if s.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if needle in cmdline and "Z" not in state.split()[1]:
            found.append(f"{proc.name}: {cmdline}")
    return found


def wait_until_gone(needle: str, seconds: float = 15) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := processes_with(needle)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture
def openvino_ref(tiny_artifacts):
    """The tiny net's OpenVINO artifact: manifest.json, model.bin, then model.xml last in the tar."""
    [ref] = resolve([tiny_artifacts / "tiny-openvino-fp32"])
    return ref


# -- 1. `devices clean` removes only what we put there ------------------------------------------

@pytest.mark.parametrize("workdir", ["~", "~/", "/", "", "  ", ".", "~/.", "//", "..", "~/../etc",
                                     "a/../../b", "/tmp/../"])
def test_workdir_that_is_home_root_empty_or_climbs_is_refused_when_read(workdir):
    with pytest.raises(DeviceConfigError) as err:
        parse_devices({"devices": {"pi": {"url": "ssh://pi@10.0.0.2", "workdir": workdir}}})
    assert "workdir" in str(err.value) and err.value.hint and "~/.cache" in err.value.hint


def test_clean_with_workdir_home_exits_2_before_touching_the_device(sshd, tmp_path):
    devices = write_devices(tmp_path / "d.toml", {"lo": dict(device_entry(sshd, tmp_path / "wd"), workdir="~")})
    log_before = sshd.log_path.stat().st_size
    result = run_cli(["devices", "clean", "lo", "--devices", str(devices)], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "workdir '~' is the home or root folder" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert Path.home().is_dir()
    assert "Connection from" not in sshd.log_path.read_text()[log_before:]   # refused on reading the file


def test_bench_then_clean_keeps_the_users_files_in_an_existing_workdir(sshd, tiny_artifacts, tmp_path):
    wd = tmp_path / "users-folder"
    (wd / "notes").mkdir(parents=True)
    (wd / "precious.txt").write_text("the user's own file\n")
    (wd / "notes" / "a.txt").write_text("more\n")
    (wd / "runner-0000000000000000.pyz").write_text("the user's file with our naming pattern\n")
    before = sorted(p.relative_to(wd) for p in wd.rglob("*"))
    devices = write_devices(tmp_path / "d.toml", {"lo": device_entry(sshd, wd)})

    bench = CliRunner().invoke(main, ["bench", str(tiny_artifacts / "tiny-onnx-fp32"), "--runs", "4", "--rounds",
                                      "1", "--warmup", "1", "--device", "lo", "--devices", str(devices)])
    assert bench.exit_code == 0, bench.output
    own = wd / "vanillanet-edge"
    assert (own / MARKER).is_file() and not (wd / MARKER).exists()     # marked: our folder only
    assert list(own.glob("runner-*.pyz")) and list((own / "artifacts").iterdir())

    clean = CliRunner().invoke(main, ["devices", "clean", "lo", "--devices", str(devices)])
    assert clean.exit_code == 0, clean.output
    assert "removed" in clean.output
    assert not own.exists()
    assert sorted(p.relative_to(wd) for p in wd.rglob("*")) == before     # exactly the user's files
    assert (wd / "precious.txt").read_text() == "the user's own file\n"

    again = CliRunner().invoke(main, ["devices", "clean", "lo", "--devices", str(devices)])
    assert again.exit_code == 0 and "absent" in again.output and (wd / "precious.txt").exists()


def test_clean_keeps_a_file_the_user_left_inside_our_folder(sshd, tiny_artifacts, tmp_path):
    wd = tmp_path / "wd"
    devices = write_devices(tmp_path / "d.toml", {"lo": device_entry(sshd, wd)})
    bench = CliRunner().invoke(main, ["bench", str(tiny_artifacts / "tiny-onnx-fp32"), "--runs", "4", "--rounds",
                                      "1", "--warmup", "1", "--device", "lo", "--devices", str(devices)])
    assert bench.exit_code == 0, bench.output
    own = wd / "vanillanet-edge"
    (own / "mine.txt").write_text("not vanillanet-edge's\n")
    clean = CliRunner().invoke(main, ["devices", "clean", "lo", "--devices", str(devices)])
    assert clean.exit_code == 0 and "kept the folder" in clean.output, clean.output
    assert sorted(p.name for p in own.iterdir()) == ["mine.txt"]


def test_a_folder_named_like_ours_that_is_not_ours_is_neither_used_nor_cleaned(sshd, tiny_artifacts, tmp_path):
    wd = tmp_path / "wd"
    (wd / "vanillanet-edge").mkdir(parents=True)
    (wd / "vanillanet-edge" / "thesis.tex").write_text("years of work\n")
    entry = device_entry(sshd, wd)
    devices = write_devices(tmp_path / "d.toml", {"lo": entry})
    [rec] = api.bench(resolve([tiny_artifacts / "tiny-onnx-fp32"]), QUICK, [spec_of(entry)])
    assert not rec["ok"] and "is not ours" in rec["error"]
    clean = CliRunner().invoke(main, ["devices", "clean", "lo", "--devices", str(devices)])
    assert clean.exit_code == 0 and "not ours" in clean.output, clean.output
    assert sorted(p.name for p in (wd / "vanillanet-edge").iterdir()) == ["thesis.tex"]


# -- 2. ssh option injection through the URL ------------------------------------------------------

@pytest.mark.parametrize("url", [
    "ssh://-oProxyCommand=touch vne-pwned@127.0.0.1:{port}",      # user read as an ssh option
    "ssh://-oProxyCommand=touch${{IFS}}vne-pwned@127.0.0.1:{port}",
    "ssh://{user}@-oProxyCommand=touch vne-pwned:{port}",           # host read as an ssh option
    "ssh://{user}@-oProxyCommand=touch${{IFS}}vne-pwned",
    "ssh://-Fvne-pwned@127.0.0.1:{port}",
    "ssh://us$er@127.0.0.1:{port}",
    "ssh://user@127.0.0.1;touch vne-pwned:{port}",
])
def test_ssh_options_in_the_url_are_refused_before_any_connection(sshd, tmp_path, url):
    url = url.format(port=sshd.port, user=sshd.user)
    devices = write_devices(tmp_path / "d.toml", {"evil": device_entry(sshd, tmp_path / "wd", url=url)})
    log_before = sshd.log_path.stat().st_size
    result = run_cli(["devices", "check", "--devices", str(devices)], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "devices.evil.url: refusing the" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("vne-pwned*"))          # the ProxyCommand never ran
    assert not (tmp_path / "wd").exists()
    assert "Connection from" not in sshd.log_path.read_text()[log_before:]     # never connected


def test_ssh_gets_the_destination_after_double_dash_even_when_the_file_check_is_bypassed(
        sshd, tmp_path, monkeypatch):
    """Defence in depth: a spec built without devices_file's checks still cannot inject options,
    in ordinary calls or in the `-O exit` control call at close."""
    monkeypatch.chdir(tmp_path)
    spec = DeviceSpec(name="evil", url=f"ssh://-oProxyCommand=touch vne-pwned@127.0.0.1:{sshd.port}",
                      identity_file=str(sshd.identity_file), known_hosts=str(sshd.known_hosts),
                      connect_timeout_s=5)
    client = SshClient(spec)
    with pytest.raises(DeviceError):
        client.run("true", timeout=30)
    client.close()
    assert not list(tmp_path.glob("vne-pwned*"))


# -- 3. cut uploads are never published --------------------------------------------------------------

def _cuts(data: bytes) -> list[int]:
    """Byte offsets that lose part of the artifact: at every member header (a clean-looking end
    of archive in r| mode), inside headers and inside file data."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = tar.getmembers()
    files = [m for m in members if m.isfile()]
    last = files[-1]
    cuts = {0, 1, 100, 512}
    for m in members[1:]:
        cuts |= {m.offset, m.offset + 100}
    for m in files:
        cuts |= {m.offset_data + m.size // 2, m.offset_data + m.size - 1}
    return sorted(c for c in cuts if c < last.offset_data + last.size)


def test_cut_artifact_transfers_publish_nothing_and_a_full_one_is_then_sent_and_used(
        sshd, openvino_ref, tmp_path):
    ref = openvino_ref
    assert sorted(p.name for p in ref.path.iterdir())[-1] == "model.xml"
    buf = io.BytesIO()
    write_tar(ref.path, buf)
    data = buf.getvalue()
    content = content_digest(ref.path)
    device = Device(spec_of(device_entry(sshd, tmp_path / "wd")))
    try:
        device.harness.prepare()
        folder = Path(device.harness.path) / "artifacts" / sha256_path(ref.path)[:20]
        target = folder / ref.path.name
        folder.mkdir(parents=True)
        cuts = _cuts(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            assert tar.getmembers()[-1].offset in cuts        # cut just before model.xml's header
        for cut in cuts:
            proc = device.transport.run(device.harness.receive_command(str(target), content), input=data[:cut], check=False)
            assert proc.returncode == 3, f"a stream cut at byte {cut} of {len(data)}: {proc.stderr[-400:]}"
            assert "nothing was published" in proc.stderr.decode()
            assert not target.exists() and list(folder.iterdir()) == [], cut
        # a same-size stream with one changed byte in model.bin is refused too
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            bin_member = next(m for m in tar.getmembers() if m.name == "model.bin")
        bad = bytearray(data)
        bad[bin_member.offset_data + 7] ^= 0xFF
        proc = device.transport.run(device.harness.receive_command(str(target), content), input=bytes(bad), check=False)
        assert proc.returncode == 3 and not target.exists() and list(folder.iterdir()) == []

        [rec] = device.bench([ref], QUICK)          # the real transfer: complete, published, used
        assert rec["ok"], rec.get("error")
        assert device.harness.uploaded == [str(folder)]
        assert (target / COMPLETE).read_text().strip() == content[2]
        assert content_digest(target) == content and (target / "model.xml").is_file()
    finally:
        device.close()


def test_a_folder_an_older_unchecked_transfer_published_is_sent_again(sshd, openvino_ref, tmp_path):
    ref = openvino_ref
    first = Device(spec_of(device_entry(sshd, tmp_path / "wd")))
    try:
        first.harness.prepare()
        target = Path(first.harness.path) / "artifacts" / sha256_path(ref.path)[:20] / ref.path.name
    finally:
        first.close()
    # What the old receive left after a cut before model.xml's header: .complete over a half folder.
    target.mkdir(parents=True)
    for name in ("manifest.json", "model.bin"):
        (target / name).write_bytes((ref.path / name).read_bytes())
    (target / COMPLETE).write_text("ok")
    device = Device(spec_of(device_entry(sshd, tmp_path / "wd")))
    try:
        [rec] = device.bench([ref], QUICK)
        assert rec["ok"], rec.get("error")
        assert device.harness.uploaded and (target / "model.xml").is_file()
        assert content_digest(target) == content_digest(ref.path)
        assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]   # no leftovers
    finally:
        device.close()


def test_cut_runner_uploads_publish_nothing_and_a_full_one_is_then_used(sshd, tmp_path):
    data, digest = bundle.build()
    spec = spec_of(device_entry(sshd, tmp_path / "wd"))
    device = Device(spec)
    try:
        device.harness.prepare()
        runner = Path(device.harness._runner)
        runner.unlink()
        command = device.harness.runner_upload_command(str(runner), digest, len(data))
        for cut in (0, 1, 22, len(data) // 2, len(data) - 1):
            proc = device.transport.run(command, input=data[:cut], check=False)
            assert proc.returncode == 3, (cut, proc.stderr)
            assert not runner.exists() and not list(runner.parent.glob(".runner-*")), cut
        bad = bytearray(data)
        bad[len(data) // 3] ^= 0x01
        assert device.transport.run(command, input=bytes(bad), check=False).returncode == 3
        assert not runner.exists() and not list(runner.parent.glob(".runner-*"))
        # a runner left cut by an older, unchecked upload is replaced, not used
        runner.write_bytes(data[: len(data) // 2])
    finally:
        device.close()
    again = Device(spec)
    try:
        report = again.check()
        assert report["reachable"] and "error" not in report, report
        assert runner.read_bytes() == data
    finally:
        again.close()


def test_the_runner_receive_entry_refuses_truncated_stdin_locally(openvino_ref, tmp_path):
    """remote/runner.py's own entry point (as the device runs it), fed cut streams on stdin."""
    buf = io.BytesIO()
    write_tar(openvino_ref.path, buf)
    data = buf.getvalue()
    files, nbytes, sha = content_digest(openvino_ref.path)
    pyz = tmp_path / "runner.pyz"
    pyz.write_bytes(bundle.build()[0])
    dest = tmp_path / "artifacts" / "x" / openvino_ref.path.name
    dest.parent.mkdir(parents=True)
    argv = [sys.executable, str(pyz), "receive", str(dest), str(files), str(nbytes), sha]
    for cut in _cuts(data)[::3]:
        proc = subprocess.run(argv, input=data[:cut], capture_output=True, timeout=60)
        assert proc.returncode == 3 and b"nothing was published" in proc.stderr, (cut, proc.stderr[-300:])
        assert list(dest.parent.iterdir()) == []
    proc = subprocess.run(argv, input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (dest / COMPLETE).read_text().strip() == sha and content_digest(dest) == (files, nbytes, sha)


# -- 4. a timed-out remote command is stopped on the device --------------------------------------------

def test_a_command_that_outlives_its_timeout_is_killed_on_the_device(sshd, tmp_path):
    token = f"vne-outlives-{secrets.token_hex(6)}"
    pid_dir = tmp_path / "run"
    pid_dir.mkdir()
    script = tmp_path / "outlive.py"          # a process with a child of its own, both named by token
    script.write_text("import subprocess, sys, time\n"
                      "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', sys.argv[1]])\n"
                      "time.sleep(300)\n")
    client = SshClient(spec_of(device_entry(sshd, tmp_path / "wd")))
    client.pid_dir = str(pid_dir)
    try:
        command = f"{sys.executable} {script} {token}"
        t0 = time.monotonic()
        with pytest.raises(DeviceError) as err:
            client.run(command, timeout=3)
        assert err.value.kind == "timeout" and time.monotonic() - t0 < 30
    finally:
        client.close()
    assert wait_until_gone(token) == []
    assert list(pid_dir.iterdir()) == []


def test_a_bench_round_past_its_timeout_does_not_keep_running_on_the_device(sshd, tiny_artifacts, tmp_path):
    refs = resolve([tiny_artifacts / "tiny-onnx-fp32"])
    device = Device(spec_of(device_entry(sshd, tmp_path / "wd", run_timeout_s=8)))
    try:
        slow = BenchSettings(warmup=1, runs=10_000_000, rounds=2)
        records = device.bench_jobs([(refs[0], slow), (refs[0], QUICK)])
        runner = device.harness._runner
        assert not records[0]["ok"] and "no answer within 8 s" in records[0]["error"]
        assert records[1]["ok"], records[1].get("error")
        assert wait_until_gone(f"{runner} latency", seconds=5) == []
        assert list((Path(device.harness.path) / "run").iterdir()) == []
    finally:
        device.close()
