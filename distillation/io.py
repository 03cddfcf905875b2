"""Files that are written whole or not at all, loading that never runs pickled code, and file digests."""

import contextlib
import hashlib
import os
import tempfile

import torch


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A reader (or a kill -9 at any moment) sees the old file or the new one, never half of one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX + os.path.basename(path) + "-", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


TEMPORARY_PREFIX = ".tmp-"  # atomic_path's files before their rename


def remove_unfinished_writes(directory):
    """Delete the temporary files a killed process left in directory (writes never renamed)."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if name.startswith(TEMPORARY_PREFIX):
            os.remove(os.path.join(directory, name))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj, path, sync=False):
    """torch.save obj to path, whole or not at all. sync: the file is on the disk (fsync) before
    its rename, and the rename after it, so a crash of the machine, not only of the process,
    keeps the old file or the new one (the checkpoint writer's way, checkpoint_writer.py)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        if sync:
            fsync_path(tmp)
    if sync:
        fsync_path(os.path.dirname(os.path.abspath(path)))


def fsync_path(path):
    """Flush what the page cache holds of a file (or of a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def append_line(path, line):
    """Append one line and flush it, so a crash loses at most the line being written."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())


def safe_torch_load(path):
    """Load tensors only: weights_only=True refuses pickles that carry code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def file_sha256(path):
    """The hex digest of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
