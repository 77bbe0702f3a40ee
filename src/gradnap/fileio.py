"""Atomic file writes (a temporary file in the same directory, then a rename), the
check that an output path can be written before any work, and the clean-up of the
temporary files a killed write leaves behind.

Every I/O failure of a write (a missing or read-only directory, a full disk, ...) is
raised as one :class:`~gradnap.errors.GradnapError` naming the path (:func:`write_error`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
from pathlib import Path

from gradnap.errors import GradnapError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "remove_stale_temporaries",
    "write_error",
]

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)

#: Suffix of the temporary file of an atomic write: ``.<name>.<8 random chars>.tmp``
#: next to ``<name>`` (gradnap 0.2 wrote them without the suffix).
TMP_SUFFIX = ".tmp"


def _tmp_pattern(name: str) -> re.Pattern[str]:
    """Names of the temporary files of atomic writes of ``name`` (``tempfile.mkstemp``'s
    8 characters, with or without :data:`TMP_SUFFIX`)."""
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}(?:{re.escape(TMP_SUFFIX)})?")


def write_error(path: Path | str, exc: OSError, label: str | None = None) -> GradnapError:
    """The one-line error of a failed write of ``path``: ``"<label>: cannot write (<why>)"``
    (``label`` defaults to the path; the file the error names is added when it is
    another one, e.g. a directory that cannot be created)."""
    path = Path(path)
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        why = "no space left on device"
    other = exc.filename
    if other is not None and (
        Path(other) == path or Path(other).name.startswith(f".{path.name}.")  # our temporary
    ):
        other = None
    return GradnapError(f"{label or path}: cannot write ({why}{f': {other}' if other else ''})")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory
    (creating missing directories). Raises :class:`GradnapError` naming ``path`` when
    it cannot be written (the old file, if any, is left as it was)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_writable(path: Path | str, what: str = "", *, directory: bool = False) -> Path:
    """Raise :class:`GradnapError` now if ``path`` cannot be written later.

    Call it before the work whose output goes to ``path``. ``directory``: ``path`` is a
    directory to write files into (else a file, written by :func:`atomic_write_bytes`).
    Missing directories are fine when they can be created (they are not created here):
    the nearest existing one must be a writable directory; a file is created in it and
    removed again, which also finds read-only mounts. ``what`` (e.g. ``"--out"``)
    starts the message. Returns ``path``.
    """
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if directory:
        if path.exists() and not path.is_dir():
            raise GradnapError(f"{label}: is a file, not a directory")
    elif path.is_dir():
        raise GradnapError(f"{label}: is a directory, not a file name")
    parent = path if directory else path.parent
    probe_dir = parent
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise GradnapError(f"{label}: cannot write ({probe_dir} is not a directory)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=probe_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise write_error(path, exc, label) from exc
    return path


def remove_stale_temporaries(path: Path | str) -> list[Path]:
    """Remove the temporary files that killed atomic writes of ``path`` left next to it
    (``.<name>.<8 chars>[.tmp]``), logging each with its size; returns them.

    Call it when a run that writes ``path`` starts, not while another process may be
    writing it.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = _tmp_pattern(path.name)
    removed = []
    for p in sorted(path.parent.glob(f".{path.name}.*")):
        if not pattern.fullmatch(p.name) or p.is_symlink() or not p.is_file():
            continue
        try:
            size = p.stat().st_size
            p.unlink()
        except OSError as exc:
            log.warning("cannot remove the stale temporary file %s (%s)", p, exc.strerror)
            continue
        log.warning(
            "removed %s (%.1f MB): the temporary file of an interrupted write of %s",
            p,
            size / 1e6,
            path.name,
        )
        removed.append(p)
    return removed
