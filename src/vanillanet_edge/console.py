"""A quiet console: our own lines and progress bars on the terminal, toolchain chatter elsewhere.

The toolchains talk on three channels, and each needs its own handling:
- native code (absl/TensorFlow's "I0000 ... flatbuffer_export.cc", XNNPACK's "Created TensorFlow
  Lite XNNPACK delegate", OpenVINO, coremltools' "Failed to load _MLModelProxy") writes to file
  descriptor 2 directly, below Python;
- Python warnings (coremltools' version warnings, torch's pytree deprecation, multiprocessing's
  os.fork() note) go through `warnings.showwarning`;
- library loggers (nncf, absl, torch) go through `logging`.
`quiet()` points descriptor 2 at a log file (or /dev/null when there is none), gives Python's
own `sys.stderr` a fresh descriptor onto the terminal (so tqdm bars and our error messages still
reach the user), and sends warnings and library log records to the same log. `-v` skips it all.
Child processes inherit descriptor 2, so their native chatter lands in the log too.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import stat
import sys
import warnings
from pathlib import Path

from .errors import VanillaNetEdgeError

_state: dict = {}


def quiet(log_path: str | Path | None = None) -> None:
    """Start quiet mode (idempotent); chatter goes to `log_path`, or nowhere when None."""
    if "terminal" not in _state:
        if sys.stderr is not sys.__stderr__:
            return     # someone already captures stderr (click's CliRunner, pytest): leave it to them
        try:
            terminal_fd = os.dup(2)
        except OSError:          # no descriptor 2 at all (a daemon): nothing to keep quiet
            return
        _state["terminal"] = terminal_fd
        sys.stderr = io.TextIOWrapper(os.fdopen(terminal_fd, "wb", buffering=0), encoding="utf-8",
                                      errors="replace", line_buffering=True, write_through=True)
        warnings.showwarning = _to_log
        # Libraries imported from now on (torch, absl, nncf are imported lazily) make their
        # logging.StreamHandler() with sys.stderr, which is now the terminal: give them the log.
        _state["log_stream"] = open(2, "w", closefd=False, buffering=1, encoding="utf-8", errors="replace")
        original_init = logging.StreamHandler.__init__

        def stream_handler_init(self, stream=None):
            to_log = stream is None or stream is sys.stderr
            original_init(self, _state["log_stream"] if to_log else stream)

        logging.StreamHandler.__init__ = stream_handler_init
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(_LogHandler())
        logging.lastResort = _LogHandler()
    log_to(log_path)


def log_to(log_path: str | Path | None) -> None:
    """Send the chatter to `log_path` (appended to) from now on; None: nowhere.

    The log's folder must exist (the caller owns it: `run` opens OUT/toolchain.log only once the
    pipeline file is valid and the run folder is claimed). The file is opened without following
    a symbolic link and must be a regular file: a link planted at that name would send our
    writes to whatever it points at."""
    if "terminal" not in _state:
        return
    target = _open_log(Path(log_path)) if log_path is not None else os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    if sys.__stderr__ is not None:
        sys.__stderr__.flush()        # what Python buffered for descriptor 2 goes where it was meant
    os.dup2(target, 2)
    os.close(target)
    _state["path"] = log_path
    _sweep_handlers()


def _open_log(path: Path) -> int:
    # O_NONBLOCK: a fifo planted there must not hang the open (it is refused below).
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        kind = "a symbolic link" if os.path.islink(path) else None
        raise VanillaNetEdgeError(
            f"cannot open the log {path}: " + (f"it is {kind}, and we never write through links"
                                              if kind else exc.strerror or str(exc)),
            hint=f"remove {path} (it must be a plain file of ours) and run again") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise VanillaNetEdgeError(f"cannot open the log {path}: it is not a regular file",
                                  hint=f"remove {path} (it must be a plain file of ours) and run again")
    os.set_blocking(fd, True)
    return fd


@contextlib.contextmanager
def logging_to(log_path: str | Path):
    """`log_to(log_path)` for the block, then the chatter goes where it went before."""
    before = _state.get("path")
    log_to(log_path)
    try:
        yield
    finally:
        log_to(before)


def _sweep_handlers() -> None:
    """Loggers set up before quiet mode (torch's, at import) keep a handler on the terminal,
    some looking sys.stderr up at every record: replace each with one writing to the log."""
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    terminal_like = {id(sys.stderr), id(sys.__stderr__)}
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, _LogHandler):
                continue
            if id(getattr(handler, "stream", None)) in terminal_like:
                logger.removeHandler(handler)
                logger.addHandler(_LogHandler(handler.level))


def _write(text: str) -> None:
    try:
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def _to_log(message, category, filename, lineno, file=None, line=None) -> None:
    _write(warnings.formatwarning(message, category, filename, lineno, line))


class _LogHandler(logging.Handler):
    def __init__(self, level: int = logging.WARNING):
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        _write(self.format(record) + "\n")


def on_terminal() -> bool:
    """Whether our own stderr is a terminal (quiet() keeps a descriptor onto it)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):      # closed or replaced by something without a descriptor
        return False


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar drawn on a terminal only. Redirected to a log, a bar's carriage-return redraws
    pile up into one long line (a 69-step bar made a 12 KB line), and the stage lines the
    pipeline logs already say what is being done."""
    from tqdm import tqdm

    kwargs["disable"] = bool(kwargs.get("disable")) or not on_terminal()
    return tqdm(iterable, **kwargs)
