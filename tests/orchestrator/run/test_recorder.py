"""orchestrator.run.recorder: one CSV line per operation, in OPS_COLUMNS, as ingestion reads it."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from orchestrator.backends.base import GetResult
from orchestrator.redaction import learn_secrets
from orchestrator.results.logs import OPS_COLUMNS, CsvRecorder
from orchestrator.run.recorder import TaskRecorder, error_text, read_tail, write_tail


def lines(path: Path) -> list[list[str]]:
    return list(csv.reader(path.read_text().splitlines()))


class TestTaskRecorder:
    """Successes on the fast path, failures on the general one, nothing in a warm-up."""

    def test_every_kind_of_row(self, tmp_path: Path) -> None:
        """Reads (miss, hit, local hit), writes, deletes, loader executions and a failure:
        each line has every column, in order, with its value where the column says."""
        target = CsvRecorder(tmp_path / "ops.csv")
        rec = TaskRecorder(target, 7, quoted=False)
        rec.ok("get", "k1", 100, 150, read_tail(GetResult(None)))
        rec.ok("get", "k2", 200, 230, read_tail(GetResult(b"3:7:12|xxxx", False)))
        rec.ok("get", "k3", 300, 301, read_tail(GetResult(b"3:7:13|", True)))
        rec.ok("set", "k4", 400, 480, write_tail("3:7:14", 99))
        rec.ok("delete", "k5", 500, 520, write_tail("3:7:15", None))
        rec.ok("load", "k6", 600, 700, write_tail("3:7:L1", None))
        rec.failed("set", "k7", 800, 900, ConnectionError("refused"), "3:7:16")
        target.close()
        rows = lines(tmp_path / "ops.csv")
        assert all(len(row) == len(OPS_COLUMNS) for row in rows)
        assert rows == [
            ["7", "get", "k1", "100", "50", "0", "0", "", "", ""],
            ["7", "get", "k2", "200", "30", "1", "0", "3:7:12", "", ""],
            ["7", "get", "k3", "300", "1", "1", "1", "3:7:13", "", ""],
            ["7", "set", "k4", "400", "80", "", "", "3:7:14", "99", ""],
            ["7", "delete", "k5", "500", "20", "", "", "3:7:15", "", ""],
            ["7", "load", "k6", "600", "100", "", "", "3:7:L1", "", ""],
            ["7", "set", "k7", "800", "100", "", "", "3:7:16", "", "ConnectionError: refused"],
        ]

    def test_ingested_as_written(self, tmp_path: Path) -> None:
        """DuckDB reads the lines with the ingest's column types, a quoted key and an error
        with a comma and a quote included."""
        target = CsvRecorder(tmp_path / "ops.csv")
        rec = TaskRecorder(target, 1, quoted=True)
        rec.ok("get", 'a,"b"1', 10, 15, read_tail(GetResult(b"0:0:1|v", True)))
        rec.failed("get", 'a,"b"2', 20, 25, ValueError('bad, "very"'))
        target.close()
        columns = ", ".join(f"'{name}': '{kind}'" for name, kind in OPS_COLUMNS.items())
        with duckdb.connect() as con:  # the ingest's options (orchestrator.results.store)
            got = con.execute(
                f"SELECT * FROM read_csv(?, header = false, auto_detect = false, "
                f"columns = {{{columns}}}, quote = '\"', escape = '\"', delim = ',', "
                f"strict_mode = false)", [str(tmp_path / "ops.csv")]).fetchall()
        assert got == [(1, "get", 'a,"b"1', 10, 5, 1, 1, "0:0:1", None, None),
                       (1, "get", 'a,"b"2', 20, 5, None, None, None, None,
                        'ValueError: bad, "very"')]

    def test_warm_up_records_nothing(self, tmp_path: Path) -> None:
        """Without a target recorder (a warm-up), successes and failures leave no line."""
        rec = TaskRecorder(None, 1, quoted=False)
        rec.ok("get", "k", 1, 2, "0,0,,")
        rec.failed("get", "k", 1, 2, RuntimeError("x"))
        assert not list(tmp_path.iterdir())

    def test_flushes_whole_chunks(self, tmp_path: Path) -> None:
        """Lines are appended to the file in chunks of ``flush_at``, failures included."""
        target = CsvRecorder(tmp_path / "ops.csv", flush_at=3)
        rec = TaskRecorder(target, 1, quoted=False)
        rec.ok("get", "k", 1, 2, "0,0,,")
        rec.failed("get", "k", 3, 4, RuntimeError("x"))
        assert (tmp_path / "ops.csv").read_text() == ""
        rec.ok("get", "k", 5, 6, "0,0,,")
        assert len(lines(tmp_path / "ops.csv")) == 3 and target.rows == []
        rec.failed("get", "k", 7, 8, RuntimeError("y"))
        rec.failed("get", "k", 9, 10, RuntimeError("z"))
        rec.failed("get", "k", 11, 12, RuntimeError("w"))
        assert len(lines(tmp_path / "ops.csv")) == 6
        target.close()

    def test_error_text_redacted(self) -> None:
        """A password in an error never reaches the line; long texts are cut at 300."""
        learn_secrets({"postgres_dsn": "postgresql://u:s3cr3t-pw@h/db"}, {})
        text = error_text(OSError("could not connect with s3cr3t-pw " + "x" * 400))
        assert "s3cr3t-pw" not in text and text.startswith("OSError: could not connect")
        assert len(text) == 300
