"""Writing tables: CSV or Parquet by file extension, atomically, never overwriting unasked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from .errors import InvalidArgumentError

FORMATS = (".csv", ".parquet")


def current_umask() -> int:
    """The process umask (read from /proc where possible, so no thread sees it changed)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` in one rename.

    The file gets the mode a plain ``open(path, "w")`` would give (0644 under umask 022), not
    the 0600 of a private temporary file. Raises FileExistsError when ``path`` exists and
    ``overwrite`` is False.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_table(df: pd.DataFrame, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``df`` as CSV or Parquet, chosen by the extension of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidArgumentError(f"cannot write {path}: use a .csv or .parquet file name")
    if suffix == ".csv":
        return atomic_write(path, lambda p: df.to_csv(p, index=False), overwrite)
    return atomic_write(path, lambda p: df.to_parquet(p, index=False), overwrite)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or Parquet table by extension."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise InvalidArgumentError(f"cannot read {path}: use a .csv or .parquet file")
