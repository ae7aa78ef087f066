"""Looking for a secret everywhere a command could have put it: files, DuckDB, process
command lines."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import duckdb

# Printable punctuation, all of it: every character a URL, a DSN, YAML, JSON, HTML, CSV or a
# shell treats specially.
PUNCTUATION = "'!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~"


def needles(secret: str, *, window: int = 8) -> set[str]:
    """What a leak of ``secret`` looks like: the secret as it is, percent-encoded, escaped
    for JSON, and every substring of ``window`` characters of each of those."""
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
             json.dumps(secret)[1:-1]}
    found = set(forms)
    for form in forms:
        found.update(form[i:i + window] for i in range(max(0, len(form) - window + 1)))
    return found


def leaks_in(text: str, looked_for: Iterable[str]) -> list[str]:
    """The needles found in ``text``."""
    return sorted(n for n in looked_for if n in text)


def file_texts(root: Path, skip: Iterable[Path] = ()) -> Iterator[tuple[Path, str]]:
    """Every file under ``root`` (but ``skip``), each as text (bytes read as Latin-1, so a
    DuckDB file or any binary is searched byte for byte)."""
    skipped = {p.resolve() for p in skip}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.resolve() not in skipped:
            yield path, path.read_bytes().decode("latin-1")


def database_texts(path: Path) -> Iterator[tuple[str, str]]:
    """Every value of every column of every table of a DuckDB database, cast to text."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()")
                  .fetchall()]
        for table in tables:
            columns = [r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table])
                .fetchall()]
            for column in columns:
                values = con.execute(f'SELECT DISTINCT "{column}"::VARCHAR FROM "{table}" '
                                     f'WHERE "{column}" IS NOT NULL').fetchall()
                yield f"{table}.{column}", "\n".join(str(v[0]) for v in values)


class CommandLines:
    """Samples ``/proc/*/cmdline`` of every process in a thread while the block runs, keeping
    each distinct command line seen."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for path in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    line = path.read_bytes()
                except OSError:
                    continue  # the process is gone
                if line:
                    self.seen.add(line.replace(b"\0", b" ").decode("utf-8", "replace"))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
