"""Small file systems that fail the way real disks do: a read-only bind mount and a full tmpfs (root only).

A test that needs one skips, saying why, only where mounting is impossible (not root, or no mount permission in a
container); everything mounted is unmounted when the test ends.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


class Mounts:
    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def _mount(self, *args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            if not self.mounted:  # the first mount tells whether this machine lets the tests mount at all
                pytest.skip(f"mounting is impossible here (`mount {' '.join(args)}`: {done.stderr.strip()})")
            raise RuntimeError(f"mount {' '.join(args)} failed: {done.stderr.strip()}")

    def tmpfs(self, where: Path, size: str) -> Path:
        """A tmpfs of `size` (`64k`, `2m`) at `where`."""
        where.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
        self.mounted.append(where)
        return where

    def read_only(self, source: Path, where: Path) -> Path:
        """`source` seen read-only at `where` (a bind mount remounted ro): `source` itself stays writable."""
        where.mkdir(parents=True, exist_ok=True)
        self._mount("--bind", str(source), str(where))
        self.mounted.append(where)
        self._mount("-o", "remount,bind,ro", str(where))
        return where

    def writable(self, where: Path) -> None:
        """Make a read-only bind mount writable again (the disk came back)."""
        self._mount("-o", "remount,bind,rw", str(where))

    def unmount_all(self) -> None:
        for where in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
        self.mounted.clear()


def fill(folder: Path) -> Path:
    """Fill the file system holding `folder` to the last byte; the file that did it (delete it to free space)."""
    path = folder / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path
