"""Atomic writes: all or nothing, with the permissions a plain open() would give."""
import os
import stat

import pytest

from distillation.io import atomic_path, atomic_write_text


def test_atomic_write_gives_umask_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "results.txt", "step: 1\n")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "results.txt").st_mode) == 0o644
    assert (tmp_path / "results.txt").read_text() == "step: 1\n"


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "gs10.pkl"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["gs10.pkl"]
