"""Every command the READMEs show is exercised (with tiny settings), so none can rot."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from support.ray_fixtures import RayCluster
from support.readme import DOCS, about_suites, commands
from support.repo import ROOT

from orchestrator.services import Services

TINY = ("--set processes=1 --set writers=1 --set readers=1 --set write_iterations=3 "
        "--set read_iterations=3 --set keyspace=4 --set warmup_s=0 --set prefill=false "
        "--set duration_s=null --set repeat=1")


# The suite lines run in tests/orchestrator/test_suite_command.py, on a measured suite.
ORCHESTRATOR = [(doc, line) for doc, line in commands("python -m orchestrator")
                if not about_suites(line)]


def _tiny(line: str, db: Path) -> str:
    words = shlex.split(line)
    command = words[3]
    extra = ""
    if command == "run":
        extra = f" {TINY}" + ("" if "--backends" in words else " --backends postgres-cache")
    if command == "ingest":  # the log directory of the last run the test made
        log_dir = max((db.parent / "logs").iterdir(), key=lambda p: p.name)
        line = line.replace(words[4], str(log_dir))
    if command in ("run", "report", "query", "ingest"):
        extra += f" --results {db}"
    if "-o" in words:  # beside the database: a file of that name elsewhere is not the test's
        target = words[words.index("-o") + 1]
        line = line.replace(f"-o {target}", f"-o {shlex.quote(str(db.parent / Path(target).name))}")
    return line.replace("python", shlex.quote(sys.executable), 1) + extra


class TestReadmeCommands:
    """The documented commands run and succeed."""

    def test_found_commands(self) -> None:
        """The READMEs show every orchestrator command."""
        shown = {shlex.split(line)[3] for _, line in commands("python -m orchestrator")}
        assert {"run", "suite", "validate", "report", "query", "ingest", "services"} <= shown

    def test_every_orchestrator_command(self, services: Services, ray_cluster: RayCluster,
                                        tmp_path: Path) -> None:
        """Each `python -m orchestrator ...` line exits 0 (runs first, so reports have data);
        `--executor ray` runs on the session's Ray cluster."""
        env = dict(os.environ, POSTGRES_DSN=services.postgres_dsn,
                   VALKEY_URL=services.valkey_url, PGCACHE_SERVICES_DIR=str(tmp_path / "svc"),
                   **ray_cluster.env())
        db = tmp_path / "r.duckdb"
        ordered = sorted(ORCHESTRATOR, key=lambda item: shlex.split(item[1])[3] != "run")
        try:
            for doc, line in ordered:
                result = subprocess.run(["bash", "-c", _tiny(line, db)], cwd=ROOT, env=env,
                                        capture_output=True, text=True, timeout=120,
                                        check=False)
                assert result.returncode == 0, (doc, line, result.stderr[-1500:])
        finally:
            subprocess.run([sys.executable, "-m", "orchestrator", "services", "down",
                            "--purge"], cwd=ROOT, env=env, capture_output=True, timeout=60,
                           check=False)
        with duckdb.connect(str(db), read_only=True) as con:
            for _, line in commands("duckdb "):
                sql = shlex.split(line)[-1]
                assert con.execute(sql).fetchall()

    def test_modules_are_not_the_command_line(self) -> None:
        """A dated measurement's `python -m orchestrator.pgcache_bench.microbench ...` (minutes
        long) is shown but is not one of the command line's lines, which this class runs."""
        assert any("```bash\npython -m orchestrator.pgcache_bench.microbench" in doc.read_text()
                   for doc in DOCS)
        assert {shlex.split(line)[2] for _, line in commands("python -m orchestrator")} \
            == {"orchestrator"}

    @pytest.mark.parametrize("line", sorted({line for _, line in commands("make ")}))
    def test_make_targets_exist(self, line: str) -> None:
        """Each `make TARGET` shown is a target of the Makefile."""
        target = shlex.split(line)[1]
        assert re.search(rf"^{re.escape(target)}:", (ROOT / "Makefile").read_text(), re.M)


def _cloud_run_command() -> list[str]:
    """The orchestrator command that README's `ray exec` line runs on the head node."""
    line = next(line for _, line in commands("ray exec "))
    inner = shlex.split(line)[-1]
    words = shlex.split(inner.split("&&", 1)[1])
    return words[words.index("python") + 3:]


class TestManyHosts:
    """The README's cloud example: a cluster Ray accepts, a command the orchestrator accepts."""

    def test_cluster_yaml_is_valid(self) -> None:
        """deploy/ray-cluster.yaml passes Ray's own cluster-config validation."""
        config = yaml.safe_load((ROOT / "deploy" / "ray-cluster.yaml").read_text())
        validate_config(prepare_config(config))
        assert config["file_mounts"] == {"~/pgcache": "."}
        assert any("[bench,distributed]" in c for c in config["setup_commands"])

    def test_cloud_command_validates(self) -> None:
        """The command run on the head node (README and the cluster YAML's header) names a
        workload and flags the orchestrator accepts, with managed (not loopback) servers."""
        words = _cloud_run_command()
        assert words[0] == "run" and "--executor" in words
        result = subprocess.run([sys.executable, "-m", "orchestrator", "validate",
                                 *words[1:]], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "8 processes on Ray at auto" in result.stdout
        header = (ROOT / "deploy" / "ray-cluster.yaml").read_text()
        assert " ".join(words) in header
