"""Atomic writes into folders we own: a file (or folder) appears under its final name only once
it is complete, and nothing we did not write is ever replaced or removed.

Work happens under a hidden temporary name in the same folder, `.NAME.partial-<random>`,
created exclusively (never a predictable name that something else could have planted), then
one rename publishes it. Before the rename the data and the folder entries are fsync'ed, and
the folder again after it, so a power cut cannot leave an empty or torn file under a finished
name. An interrupted or failed write leaves at most a partial entry, never something that
looks finished; `clean_partials` removes the leftovers of writers that are gone.

Ownership. An output folder (`--out DIR`, a run folder) is ours only if we made it, or it was
empty when we claimed it: `claim_folder` marks it with `.vanillanet-edge` and refuses a
non-empty folder without that mark. A folder we publish (an artifact, a data set) carries the
same mark, listing every entry we wrote; it is replaced only while it holds nothing else. Our
temporary names carry a check of the name they stand for, so no user's file name matches them
by accident (`.notes.old-2024` and `.movie.mkv.partial-99999` are not ours and are left alone).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat
from pathlib import Path

from .errors import VanillaNetEdgeError

# Our temporary names, exactly: `.NAME.partial-vneCCCCCCCCRRRRRRRRRRRRRRRR` and the same with
# `.old-`: C is the first 8 hex digits of a sha256 of NAME (`_name_check`), R 16 random hex
# digits. Cleaning touches nothing else: a pattern alone (a PID, any hex) matched users' names.
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<kind>partial|old)-vne(?P<check>[0-9a-f]{8})[0-9a-f]{16}")

# The mark of a folder we made or published: JSON {"tool": MARK_TOOL, "entries": [...] or null}.
OWNED_MARK = ".vanillanet-edge"
MARK_TOOL = "vanillanet-edge"
_MARK_MAX_BYTES = 16 << 20


class ForeignPathError(VanillaNetEdgeError):
    """A path we were asked to write holds something we did not write: we leave it alone."""


# fds holding an flock for this process (a run lock, a partial being written). A process that
# forks without exec (a library's helper, multiprocessing's fork) would share each lock with
# the child, and a child that outlives a killed parent would keep it: a dead run's folder would
# stay locked and its partials look alive. The child closes its copies at once; the lock stays
# the parent's alone. (Children started by exec never see them: the fds are close-on-exec.)
_HELD_LOCKS: set[int] = set()


def _close_held_locks_in_child() -> None:
    for fd in list(_HELD_LOCKS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


def hold_lock(fd: int) -> int:
    """Mark `fd`, which holds an flock, as this process's own (forked children drop it)."""
    _HELD_LOCKS.add(fd)
    return fd


def release_lock(fd: int) -> None:
    """Close a `hold_lock` fd: its flock is released."""
    _HELD_LOCKS.discard(fd)
    os.close(fd)


def _name_check(name: str) -> str:
    return hashlib.sha256(b"vanillanet-edge temporary\0" + os.fsencode(name)).hexdigest()[:8]


def _temp_name(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}.{kind}-vne{_name_check(final.name)}{secrets.token_hex(8)}")


def _our_temp(name: str) -> str | None:
    """'partial' or 'old' if `name` is one of our temporary names, else None."""
    m = _TEMP_RE.fullmatch(name)
    if m and m.group("check") == _name_check(m.group("name")):
        return m.group("kind")
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _same_inode(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _make_partial(final: Path, is_dir: bool) -> tuple[Path, int]:
    """Create `.NAME.partial-<random>` exclusively and hold an flock on it; (path, lock fd).

    The flock is how `clean_partials` tells a live writer's partial from a dead one's: the
    kernel drops it when the writer exits, however it exits. A cleaner may grab the new entry
    between our create and our flock; it removes only while holding the lock, so after taking
    the lock we check that the name is still ours, and start over if it is not.
    """
    while True:
        tmp = _temp_name(final, "partial")
        try:
            if is_dir:
                os.mkdir(tmp, 0o777)       # the umask applies, as for any folder we make
            else:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        if is_dir:
            try:
                fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:      # a cleaner took the new folder before we opened it
                continue
        hold_lock(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner examines it
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL):
                release_lock(fd)
                raise
            return tmp, fd                 # no locks on this file system: its partials stay
        if _same_inode(tmp, fd):
            return tmp, fd
        release_lock(fd)


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if directory else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """fsync a file, or every file and folder inside a folder (deepest first), then itself."""
    st = os.stat(path, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        if stat.S_ISREG(st.st_mode):
            _fsync_path(path)
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            p = Path(root, name)
            if stat.S_ISREG(os.stat(p, follow_symlinks=False).st_mode):
                _fsync_path(p)
        _fsync_path(Path(root), directory=True)


_RENAME_EXCHANGE = 2
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = (fn, ctypes)
        except (OSError, AttributeError):
            _renameat2 = False
    if not _renameat2:
        return False
    fn, ctypes = _renameat2
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False                       # this file system (or kernel) cannot swap
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _publish(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`, replacing whatever `final` is (file or folder).

    A file over a file is one atomic rename. A folder cannot be renamed over a non-empty one
    (nor a file over a folder): there the two are swapped atomically and the old content, now
    under the partial name, is removed, so `final` never goes missing. Where swapping is not
    supported, `final` is moved aside to `.NAME.old-<random>` first; a crash between the two
    renames leaves that name, which the next write of NAME or `clean_partials` removes.
    Concurrent writers of one name each publish a complete version; the last one stays.
    """
    for _ in range(1000):
        try:
            os.replace(tmp, final)
            return
        except OSError as exc:
            if exc.errno not in (errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise
        try:
            if _exchange(tmp, final):
                _remove(tmp)               # the previous content of `final`
                return
        except FileNotFoundError:          # `final` went away meanwhile: a plain rename now
            continue
        old = _temp_name(final, "old")
        try:
            os.rename(final, old)
        except FileNotFoundError:
            continue
        try:
            os.replace(tmp, final)
            return
        except OSError as exc:             # another writer published in between: once more
            if exc.errno not in (errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise
        finally:
            _remove(old)
    raise OSError(errno.EBUSY, f"could not publish {final}: other writers keep replacing it")


def _remove_old(final: Path) -> None:
    prefix = f".{final.name}.old-"
    with contextlib.suppress(OSError):
        for p in final.parent.iterdir():
            if p.name.startswith(prefix) and _our_temp(p.name) == "old":
                _remove(p)


# -- ownership ------------------------------------------------------------------------------
def _entries(folder: str | os.PathLike | int) -> list[str]:
    """Every entry under `folder` (a path or an open folder fd; links not followed) but our mark."""
    if not isinstance(folder, int):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return _entries(fd)
        finally:
            os.close(fd)
    found = []
    for root, dirs, files, _ in os.fwalk(".", dir_fd=folder):
        for name in dirs + files:
            rel = os.path.normpath(os.path.join(root, name))
            if rel != OWNED_MARK:
                found.append(rel)
    return sorted(found)


def read_mark(folder: str | os.PathLike | int) -> dict | None:
    """Our mark in `folder` (a path or an open folder fd; a plain file, never a link), or None."""
    try:
        if isinstance(folder, int):
            fd = os.open(OWNED_MARK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        else:
            fd = os.open(Path(folder) / OWNED_MARK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MARK_MAX_BYTES:
            return None
        data = json.loads(os.pread(fd, st.st_size, 0))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    ok = isinstance(data, dict) and data.get("tool") == MARK_TOOL
    return data if ok and (data.get("entries") is None or isinstance(data.get("entries"), list)) else None


def _first_few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _mark_text(entries: list[str] | None) -> str:
    return json.dumps({"tool": MARK_TOOL, "entries": entries,
                       "why": "written by vanillanet-edge, which replaces or cleans only what it wrote"},
                      indent=1) + "\n"


def _write_mark(folder: Path, entries: list[str] | None) -> None:
    with atomic_path(folder / OWNED_MARK) as tmp:
        tmp.write_text(_mark_text(entries))


def make_folders(path: str | os.PathLike) -> Path:
    """`mkdir -p` that marks each folder it creates as ours (a folder we made is ours)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:           # another process made it (and marks it) meanwhile
            continue
        _write_mark(folder, None)
    return path


def claim_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Make `path` a folder we own: create and mark it, or accept it if it is marked or empty.

    A non-empty folder without our mark is someone else's: refused, and nothing in it is read,
    written or cleaned. A file (or a link to one) at `path` is refused too.
    """
    path = Path(path)
    hint = "pass a new or empty folder: vanillanet-edge writes only into folders it made"
    if path.exists() and not path.is_dir():
        raise ForeignPathError(f"{what} {path} exists and is not a folder", hint=hint)
    try:
        make_folders(path)
        if read_mark(path) is not None:
            return path
        # Another process claiming the same new folder at this moment writes our mark too.
        inside = sorted(p.name for p in path.iterdir()
                        if not (p.name.startswith(f".{OWNED_MARK}.") and _our_temp(p.name)))
    except OSError as exc:
        raise ForeignPathError(f"cannot use {what} {path}: {exc.strerror or exc}",
                               hint="choose another folder, or fix its permissions") from None
    if inside and read_mark(path) is not None:     # marked meanwhile by a process claiming it too
        return path
    if inside:
        raise ForeignPathError(f"{what} {path} is not empty and was not made by vanillanet-edge "
                               f"(it holds {_first_few(inside)})", hint=hint)
    try:
        _write_mark(path, None)
    except OSError as exc:
        raise ForeignPathError(f"cannot write into {what} {path}: {exc.strerror or exc}",
                               hint="choose another folder, or fix its permissions") from None
    return path


def check_replaceable(final: str | os.PathLike, is_dir: bool) -> None:
    """Refuse to replace what we did not write: a folder must carry our mark and hold only the
    entries it lists; a file is never replaced by a folder, nor a folder by a file."""
    final = Path(final)
    try:
        st = os.lstat(final)
    except FileNotFoundError:
        return
    hint = "move it away, or choose another --out: vanillanet-edge replaces only what it wrote"
    if not is_dir:
        if stat.S_ISDIR(st.st_mode):
            raise ForeignPathError(f"{final} is a folder; a file was to be written there", hint=hint)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise ForeignPathError(f"{final} exists and is not a folder vanillanet-edge wrote", hint=hint)
    # Mark and entries are read through one folder fd: another writer may swap a new version
    # in under the name meanwhile, and each version must be judged by its own mark.
    try:
        dir_fd = os.open(final, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        mark = read_mark(dir_fd)
        entries = _entries(dir_fd) if mark is not None else []
    finally:
        os.close(dir_fd)
    if mark is None or mark.get("entries") is None:
        raise ForeignPathError(f"{final} exists and was not written by vanillanet-edge", hint=hint)
    foreign = sorted(set(entries) - set(mark["entries"]))
    if foreign:
        raise ForeignPathError(f"{final} holds files vanillanet-edge did not write ({_first_few(foreign)}); "
                               "it is left as it is", hint=hint)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, is_dir: bool = False):
    """Yield a temporary path to write; rename it to `final` only if the block succeeds.

    For `is_dir=True` the temporary folder is created for you; for a file, an empty file is
    there already. Write into that path in place (open it, or write files inside the folder);
    do not rename something else over it, since its flock is what tells `clean_partials` that
    the writer is alive. An existing `final` is replaced only if `check_replaceable` allows it
    (checked before and again just before publishing); a published folder gets our mark,
    listing what it holds.
    """
    final = Path(final)
    make_folders(final.parent)
    check_replaceable(final, is_dir)
    _remove_old(final)
    tmp, lock_fd = _make_partial(final, is_dir)
    try:
        yield tmp
        if is_dir:
            fd = os.open(tmp / OWNED_MARK, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o666)
            with open(fd, "w") as fh:
                fh.write(_mark_text(_entries(tmp)))
        check_replaceable(final, is_dir)
        _fsync_tree(tmp)
        _fsync_path(final.parent, directory=True)
        _publish(tmp, final)
        _fsync_path(final.parent, directory=True)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        release_lock(lock_fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically and durably (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically and durably (see `atomic_path`)."""
    atomic_write_bytes(path, text.encode(encoding))


def json_safe(data):
    """`data` as strict JSON can hold it: NaN and +-inf become None (null: not a number, not
    measured; json.dumps would write the bare tokens NaN/Infinity, which no strict parser reads),
    numpy scalars their Python numbers (default=str would write them as strings)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    if getattr(data, "ndim", None) == 0 and callable(getattr(data, "item", None)):
        return json_safe(data.item())
    return data


def json_text(data, **kwargs) -> str:
    """Strict JSON text (json_safe, then allow_nan=False); other objects (paths...) as str."""
    return json.dumps(json_safe(data), allow_nan=False, default=str, **kwargs)


def write_json(path: str | os.PathLike, data) -> None:
    """Every JSON file we write: strict JSON (see json_safe), atomically."""
    atomic_write_text(path, json_text(data, indent=2, sort_keys=False) + "\n")


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes; for a folder, of the list of its files, unambiguously.

    A folder hashes as the sha256 of the JSON list of [relative posix name, size, sha256 of
    the file] for every file inside, sorted by name: file boundaries and names cannot run into
    one another, and the folder's own location does not count. Empty folders do not count.
    remote/runner.content_digest is a second folder digest, kept apart: its docstring says why.
    Our ownership mark at the top is not content: a published folder hashes like its files.
    """
    path = Path(path)
    if path.is_file():
        return _sha256_file(path)
    entries = []
    for f in path.rglob("*"):
        if f.is_file() and f != path / OWNED_MARK:
            entries.append([f.relative_to(path).as_posix(), f.stat().st_size, _sha256_file(f)])
    entries.sort()
    encoded = json.dumps(["vanillanet-edge folder v1", entries], separators=(",", ":"))
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def size_bytes(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p != path / OWNED_MARK)


def _abandoned(p: Path) -> bool:
    """Remove partial `p` if no live writer owns it; True if removed.

    A live writer holds an flock on it (atomic_path): decided by the kernel, so neither PID
    reuse nor a clock matters, and a slow write is never mistaken for a dead one (an age limit
    would be).
    """
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:                        # vanished, a symlink, unreadable: leave it alone
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:                    # its writer is alive (or this file system cannot lock)
            return False
        if not _same_inode(p, fd):
            return False
        _remove(p)                         # still under our lock: no writer can adopt it now
        return True
    finally:
        os.close(fd)


def clean_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove our partials whose writer is gone, and our `.old-` leftovers (exact names only)."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        kind = _our_temp(p.name)
        if kind == "partial" and _abandoned(p):
            removed.append(p)
        elif kind == "old":
            # A previous version moved aside by a writer's first rename (see _publish): it is
            # garbage whether or not that writer still runs, so it goes without a check.
            _remove(p)
            removed.append(p)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine (0 and negatives: never)."""
    if pid <= 0:
        return False     # os.kill(0, ...) would signal our own process group: always "alive"
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True
