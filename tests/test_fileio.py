import errno
import logging
import os
import stat
import tempfile

import pytest

from gradnap.errors import GradnapError
from gradnap.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    remove_stale_temporaries,
)
from helpers import disk_full


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o044  # readable by others, as with open() under a usual umask


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    failed = disk_full(monkeypatch)
    with pytest.raises(GradnapError) as info:
        atomic_write_bytes(path, b"new" * 1000)
    assert str(info.value) == f"{path}: cannot write (no space left on device)"
    assert failed == ["f.bin"]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temporary left


def test_write_errors_name_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(GradnapError, match=r"file/sub/f.txt: cannot write \(Not a directory"):
        atomic_write_text(tmp_path / "file" / "sub" / "f.txt", "x")
    (tmp_path / "d").mkdir()
    with pytest.raises(GradnapError, match=r"d: cannot write \(Is a directory\)"):
        atomic_write_text(tmp_path / "d", "x")
    assert sorted(p.name for p in (tmp_path / "d").parent.iterdir()) == ["d", "file"]


def test_check_writable_before_any_work(tmp_path, monkeypatch):
    out = tmp_path / "new" / "deeper" / "r.npz"
    assert check_writable(out, "--out") == out
    assert not (tmp_path / "new").exists()  # can be created, but is not created here
    assert check_writable(tmp_path / "rep", directory=True) == tmp_path / "rep"
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(GradnapError, match=r"^--out .*d: is a directory, not a file name$"):
        check_writable(tmp_path / "d", "--out")
    with pytest.raises(GradnapError, match=r"^--out .*f: is a file, not a directory$"):
        check_writable(tmp_path / "f", "--out", directory=True)
    with pytest.raises(GradnapError, match=r"f/x/r.npz: cannot write \(.*f is not a directory\)"):
        check_writable(tmp_path / "f" / "x" / "r.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]  # the probes are gone

    def read_only(*args, **kw):  # what a read-only mount (or a directory of another user) says
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(
        GradnapError, match=r"^--out .*r.npz: cannot write \(Read-only file system\)$"
    ):
        check_writable(tmp_path / "r.npz", "--out")


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path, caplog):
    path = tmp_path / "run.npz"
    stale = [tmp_path / ".run.npz.k3j_9x0q.tmp", tmp_path / ".run.npz.ab12cd34"]  # new, 0.2 style
    others = [
        tmp_path / ".run.npz.notes",  # not our pattern
        tmp_path / ".run.npz.partial.ab12cd34.tmp",  # another file's temporary
        tmp_path / ".other.npz.ab12cd34.tmp",
        tmp_path / "run.npz.ab12cd34.tmp",
    ]
    for p in stale + others:
        p.write_bytes(b"x" * 2_000_000)
    with caplog.at_level(logging.WARNING, logger="gradnap.fileio"):
        assert remove_stale_temporaries(path) == sorted(stale)
    assert all(p.exists() for p in others) and not any(p.exists() for p in stale)
    assert caplog.text.count("(2.0 MB): the temporary file of an interrupted write of run.npz") == 2
    assert remove_stale_temporaries(tmp_path / "missing" / "x.npz") == []
