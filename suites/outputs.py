"""Output paths checked before any work starts, so a long run never ends in an unwritable ``--out``.

Every command that writes (``suite run --out/--trace``, ``compare --out``, ``place --out``,
``sweep --out``, ``hw calibrate --out``) asks here first: the path must not be a directory (or,
for a directory output, must not be a file), must not lie under a regular file, and its folder
must exist or be creatable and accept a new file. The check writes and removes a probe file,
because permission bits do not tell the whole story (root, read-only mounts, full disks).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hwsim.errors import ConfigError


class OutputPathError(ConfigError):
    """An output path cannot be written: a directory, a path under a file, an unwritable folder."""


def _blocking_file(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists but is not a directory, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _make_dir(directory: Path, flag: str, shown: Path) -> None:
    blocker = _blocking_file(directory / "x")
    if blocker is not None:
        raise OutputPathError(f"{flag} {shown}: {blocker} is a file, so nothing can be written under it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"{flag} {shown}: cannot create the folder {directory} ({exc.strerror or exc})") from None


def _probe(directory: Path, flag: str, shown: Path) -> None:
    """Create and remove a file in ``directory``: the one test that answers 'can I write here'."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".hwsim-probe-", dir=directory)
    except OSError as exc:
        raise OutputPathError(f"{flag} {shown}: cannot write in {directory} ({exc.strerror or exc})") from None
    os.close(fd)
    Path(probe).unlink(missing_ok=True)


def check_output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` if a file can be written there (creating its folder); else an OutputPathError naming ``flag``."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{flag} {path}: exists and is not a regular file")
    _make_dir(path.parent, flag, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {path}: the file is not writable")
    _probe(path.parent, flag, path)
    return path


def check_output_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` as a folder files can be written in (created if missing); else an OutputPathError naming ``flag``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a file; give a folder")
    _make_dir(path, flag, path)
    _probe(path, flag, path)
    return path


__all__ = ["OutputPathError", "check_output_dir", "check_output_file"]
