"""orchestrator.results.schema: installing the tables and views, rendering their files."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import duckdb
import pytest
from support.repo import ROOT

from orchestrator.results import schema
from orchestrator.workload import thresholds


class TestInstall:
    """install() creates the whole schema once; readers get the views an old file lacks."""

    def test_idempotent_with_one_version_row(self) -> None:
        """Installing twice keeps one schema_info row with SCHEMA_VERSION and every view."""
        c = duckdb.connect()
        schema.install(c)
        schema.install(c)
        assert c.execute("SELECT version FROM schema_info").fetchall() == [
            (schema.SCHEMA_VERSION,)]
        views = {r[0] for r in c.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        assert set(schema.VIEW_NAMES) <= views
        c.close()

    def test_read_only_file_gets_temporary_views(self, tmp_path: Path) -> None:
        """A read-only database without the views gets them as TEMP views, file untouched."""
        path = tmp_path / "old.duckdb"
        c = duckdb.connect(str(path))
        schema.install(c)
        for view in reversed(schema.VIEW_NAMES):
            c.execute(f"DROP VIEW {view}")
        c.close()
        ro = duckdb.connect(str(path), read_only=True)
        assert schema.read_only(ro)
        schema.ensure_views(ro)
        assert ro.execute("SELECT count(*) FROM consistency").fetchone() == (0,)
        ro.close()
        c = duckdb.connect(str(path), read_only=True)
        assert not c.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal"
                             ).fetchall()
        c.close()

    @pytest.mark.parametrize(("view", "metrics"), [
        ("summary", thresholds.SUMMARY_METRICS),
        ("consistency", thresholds.CONSISTENCY_METRICS),
        ("invalidation_lag_summary", thresholds.LAG_METRICS),
    ])
    def test_threshold_metrics_are_view_columns(self, view: str,
                                                metrics: tuple[str, ...]) -> None:
        """Every metric a threshold may name is a column of the view it is read from."""
        c = duckdb.connect()
        schema.install(c)
        columns = {d[0] for d in c.execute(f"SELECT * FROM {view} LIMIT 0").description}
        assert set(metrics) <= columns
        c.close()


SQL = Path(schema.__file__).parent / "sql"


class TestFiles:
    """Each table and view is one file under sql/, rendered by one templating mechanism."""

    def test_one_file_per_view_and_table(self) -> None:
        """sql/views/ holds exactly the installed views, sql/tables/ the tables."""
        assert sorted(p.stem for p in (SQL / "views").glob("*.sql")) == sorted(schema.VIEW_NAMES)
        c = duckdb.connect()
        schema.install(c)
        schema.install_threshold_results(c)
        tables = {r[0] for r in c.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        c.close()
        assert {p.stem for p in (SQL / "tables").glob("*.sql")} == tables

    def test_every_fragment_is_used(self) -> None:
        """A fragment no file names would be dead text."""
        named = set()
        for path in SQL.glob("*/*.sql"):
            named |= set(re.findall(r"\{\{(\w+)\}\}", path.read_text()))
        for view in schema.VIEW_NAMES:
            named |= {m for v in schema._VIEWS if v.name == view
                      for value in v.values.values()
                      for m in re.findall(r"\{\{(\w+)\}\}", value)}
        assert {p.stem for p in (SQL / "fragments").glob("*.sql")} <= named

    @pytest.mark.parametrize("view", schema.VIEW_NAMES)
    def test_rendered_without_markers(self, view: str) -> None:
        """Every marker of a view is replaced, and it creates the view it is named for."""
        sql = schema.view_sql(view)
        assert "{{" not in sql and "}}" not in sql
        assert f"CREATE OR REPLACE VIEW {view} AS" in sql

    def test_unknown_marker_is_refused(self, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        """A marker naming neither a value nor a fragment, or one including itself, is an
        error naming the file and the marker."""
        (tmp_path / "views").mkdir()
        (tmp_path / "fragments").mkdir()
        (tmp_path / "views" / "v.sql").write_text("SELECT {{nowhere}}")
        (tmp_path / "views" / "w.sql").write_text("SELECT {{loop}}")
        (tmp_path / "fragments" / "loop.sql").write_text("{{loop}}\n")
        monkeypatch.setattr(schema, "_SQL", tmp_path)
        with pytest.raises(ValueError, match=r"sql/views/v.sql: \{\{nowhere\}\} is neither"):
            schema.render("views", "v")
        with pytest.raises(ValueError, match=r"\{\{loop\}\} includes itself"):
            schema.render("views", "w")

    def test_values_and_fragments(self, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
        """A value wins over a fragment of the same name; both are rendered in turn; a
        fragment's last newline is dropped; view is the view's name."""
        (tmp_path / "views").mkdir()
        (tmp_path / "fragments").mkdir()
        (tmp_path / "views" / "v.sql").write_text("{{view}}: {{a}}, {{b}}.\n")
        (tmp_path / "fragments" / "a.sql").write_text("fragment a\n")
        (tmp_path / "fragments" / "b.sql").write_text("fragment b with {{a}}\n")
        monkeypatch.setattr(schema, "_SQL", tmp_path)
        assert schema.render("views", "v") == "v: fragment a, fragment b with fragment a.\n"
        assert schema.render("views", "v", {"a": "{{view}}!"}) == "v: v!, fragment b with v!.\n"

    def test_shipped_as_package_data(self) -> None:
        """pyproject's package data covers every .sql file, and they load as resources."""
        data = tomllib.loads((ROOT / "pyproject.toml").read_text())
        patterns = data["tool"]["setuptools"]["package-data"]["orchestrator.results"]
        files = sorted(p.relative_to(SQL.parent) for p in SQL.rglob("*.sql"))
        assert files and all(any(f.match(pattern) for pattern in patterns) for f in files)
        root = resources.files("orchestrator.results")
        assert all(root.joinpath(*f.parts).read_text() == (SQL.parent / f).read_text()
                   for f in files)
