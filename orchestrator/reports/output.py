"""Where a report file may be written, and writing it whole or not at all.

The rule (docs/commands.md, Files it writes): a report is written where no file is, or over
a report this tool wrote (recognised by :data:`MARKER` on its first line); over any other
file only with ``force``; over a DuckDB database (the results database or any other) or a
directory, never. The text goes to a temporary file beside the target, is flushed to disk,
then renamed over the target: a failure (a full disk) leaves the target as it was and no
partial file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.results.store import is_duckdb

# Every report this tool writes carries this comment near its start (HTML reports just after
# the doctype), and only a file carrying it is replaced without ``force``.
MARKER = "<!-- written by pgcache's orchestrator (python -m orchestrator report) -->"
_LOOK_AT = 4096  # how much of an existing file is read to find the marker
def _refusal(path: Path, force: bool, databases: tuple[Path, ...]) -> str | None:
    """Why a report may not be written at ``path`` (``over ...``), or None."""
    if path.is_dir():
        return f"over a directory ({path} is a directory): give a file name"
    if not path.exists():
        return None
    if is_duckdb(path) or path.name.endswith(".wal") or any(
            _same(path, db) or _same(path, db.with_name(db.name + ".wal")) for db in databases):
        return ("over a DuckDB database (or its write-ahead log): a report never replaces "
                "one, even with --force; choose another file name")
    if force:
        return None
    try:
        with open(path, "rb") as stream:
            head = stream.read(_LOOK_AT)
    except OSError as exc:
        return (f"over a file it cannot read ({exc.strerror or exc}): choose another file "
                "name")
    if MARKER.encode() in head:
        return None
    return ("over a file this tool did not write as a report: choose another file name, or "
            "give --force to replace it")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def write_report(path: Path, text: str, *, force: bool = False,
                 databases: tuple[Path, ...] = ()) -> None:
    """Write ``text`` (which carries :data:`MARKER`) to ``path`` by the module's rule;
    UsageError (nothing written) when the rule refuses or the file cannot be written.
    ``databases``: the results database in use, refused whatever its content."""
    check_target(path, force=force, databases=databases)
    target = path.resolve() if path.is_symlink() else path  # a link: its file is replaced
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot write the report there: "
                         f"{exc.strerror or exc}; nothing was written") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is for reading
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the error below is what matters
            os.unlink(temporary)
        raise UsageError(f"-o {path}: cannot write the report there: "
                         f"{exc.strerror or exc}; nothing was written") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def check_target(path: Path, *, force: bool = False, databases: tuple[Path, ...] = ()) -> None:
    """UsageError when a report may not be written at ``path`` (see the module's rule): said
    before any work is done, and again just before writing."""
    reason = _refusal(path, force, databases)
    if reason is not None:
        raise UsageError(f"-o {path}: refusing to write the report {reason}; nothing was "
                         "written")
