"""Reading and writing files the one way hwsim does.

Reads: every input file (hardware, grid, problem, trace, routing, workload, results) comes in
through :func:`read_text_file`, which names the file and the byte offset when it is not UTF-8
text and refuses one larger than its limit. Writes are atomic: a results or trace file is either
the old one or the complete new one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # a text input larger than this is almost surely the wrong file


def read_text_file(path: str | os.PathLike[str], error: type[Exception], what: str,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The file's text, or one line of ``error`` naming the file (unreadable, too large, binary, not UTF-8)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {what} is {size} bytes, more than the {max_bytes}-byte limit for such a file")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise error(f"{path}: {what} is a binary file (NUL byte at offset {nul}), not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it, so briefly and under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file (0644 under the usual umask 022).

    ``mkstemp`` creates 0600 whatever the umask, which would make a shared results folder
    unreadable to colleagues; atomic writes chmod their temporary to this before the rename.
    """
    return 0o666 & ~current_umask()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write to a temporary file beside ``path``, fsync, then rename over it (mode as ``open()`` would give)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike[str], document: Any) -> Path:
    # serialise first: a document that cannot be written (NaN, bad type) never touches the file
    return write_text_atomic(path, json.dumps(document, indent=1, allow_nan=False) + "\n")


def read_yaml_file(path: str | os.PathLike[str], error: type[Exception], what: str) -> Any:
    """Parse a YAML (or JSON) file, turning every failure into one line of ``error`` naming the file.

    The line of a syntax error is given, because that is what a person fixing the file needs.
    """
    import yaml

    path = Path(path)
    text = read_text_file(path, error, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}: malformed YAML{where}: {problem}") from None
