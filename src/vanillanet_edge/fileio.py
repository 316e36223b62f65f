"""Atomic writes: a file (or folder) appears under its final name only once it is complete.

Work happens under a hidden temporary name in the same folder, `.NAME.partial-<random>`,
created exclusively (never a predictable name that something else could have planted), then
one rename publishes it. Before the rename the data and the folder entries are fsync'ed, and
the folder again after it, so a power cut cannot leave an empty or torn file under a finished
name. An interrupted or failed write leaves at most a partial entry, never something that
looks finished; `clean_partials` removes the leftovers of writers that are gone.
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

# Our temporary names, exactly: `.NAME.partial-TAG` and `.NAME.old-TAG`, where TAG is 16 random
# hex digits, or a PID (the names older versions, and remote/runner.py's receive, still use).
# Cleaning touches nothing else.
_PARTIAL_RE = re.compile(r"\..+\.partial-([0-9a-f]{16}|[0-9]+)")
_OLD_RE = re.compile(r"\..+\.old-([0-9a-f]{16}|[0-9]+)")


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


def _tag() -> str:
    return secrets.token_hex(8)


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
        tmp = final.with_name(f".{final.name}.partial-{_tag()}")
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
        old = final.with_name(f".{final.name}.old-{_tag()}")
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
            if p.name.startswith(prefix) and _OLD_RE.fullmatch(p.name):
                _remove(p)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, is_dir: bool = False):
    """Yield a temporary path to write; rename it to `final` only if the block succeeds.

    For `is_dir=True` the temporary folder is created for you; for a file, an empty file is
    there already. Write into that path in place (open it, or write files inside the folder);
    do not rename something else over it, since its flock is what tells `clean_partials` that
    the writer is alive. An existing `final` is replaced.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_old(final)
    tmp, lock_fd = _make_partial(final, is_dir)
    try:
        yield tmp
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
    """
    path = Path(path)
    if path.is_file():
        return _sha256_file(path)
    entries = []
    for f in path.rglob("*"):
        if f.is_file():
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
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _abandoned(p: Path, tag: str) -> bool:
    """Remove partial `p` if no live writer owns it; True if removed.

    A live writer holds an flock on it (atomic_path): decided by the kernel, so neither PID
    reuse nor a clock matters, and a slow write is never mistaken for a dead one (an age limit
    would be). Partials named by PID (older versions, remote/runner.py) hold no flock: there
    the PID must be gone too.
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
        if tag.isdigit() and pid_alive(int(tag)):
            return False
        if not _same_inode(p, fd):
            return False
        _remove(p)                         # still under our lock: no writer can adopt it now
        return True
    finally:
        os.close(fd)


def clean_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove `.X.partial-*` leftovers whose writer is gone, and any `.X.old-*` leftover."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        m = _PARTIAL_RE.fullmatch(p.name)
        if m and _abandoned(p, m.group(1)):
            removed.append(p)
        elif _OLD_RE.fullmatch(p.name):
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
