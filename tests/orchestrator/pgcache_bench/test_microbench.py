"""orchestrator.pgcache_bench.microbench: the pgcache micro-benchmark runs end to end with tiny
settings."""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg
import pytest

from orchestrator.pgcache_bench import microbench
from orchestrator.results.servercost import postmaster_of
from orchestrator.services import Services


async def _postmaster_of_a_backend(services: Services) -> int:
    conn = await asyncpg.connect(services.postgres_dsn)
    try:  # read while the backend lives: its parent is the postmaster
        return postmaster_of(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()


async def _backend_affinity(services: Services) -> set[int]:
    conn = await asyncpg.connect(services.postgres_dsn)
    try:
        return os.sched_getaffinity(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()


def _postmaster(services: Services) -> int:
    postmaster = asyncio.run(_postmaster_of_a_backend(services))
    assert postmaster > 0, "the session's PostgreSQL runs on this host"
    return postmaster



def _affinities(pids: list[int]) -> dict[int, set[int]]:
    """Each process's CPUs, leaving out those that ended meanwhile (a PostgreSQL backend of a
    closed connection, an autovacuum worker: the server's own processes come and go)."""
    found = {}
    for pid in pids:
        try:
            found[pid] = os.sched_getaffinity(pid)
        except ProcessLookupError:
            continue
    return found

class TestMicrobench:
    def test_tiny_run_reports_every_target(self, services: Services,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """`python -m orchestrator.pgcache_bench.microbench --json` measures every target
        against the servers."""
        monkeypatch.setenv("POSTGRES_DSN", services.postgres_dsn)
        monkeypatch.setenv("VALKEY_URL", services.valkey_url)
        postmaster = _postmaster(services)
        before = os.sched_getaffinity(postmaster), os.sched_getaffinity(0)
        code = microbench.main(["--iterations", "50", "--duration", "0.5", "--json", "--pin",
                                "--option", "write_batch_max=32"])
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert report["pinned"] is True and "pinned: client on CPU" in captured.err
        # --pin gives everyone's CPUs back: the session's servers serve the other tests.
        assert (os.sched_getaffinity(postmaster), os.sched_getaffinity(0)) == before
        names = [check["name"] for check in report["checks"]]
        assert names[:6] == ["get, local hit p50", "get, local miss p50", "set p50",
                             "16-writer throughput", "invalidation lag p50",
                             "invalidation lag p99"]
        # The lease's, the bounded table's and compression's rows come between.
        assert "redis-py GET p50" in names[6:]
        assert report["options"] == {"write_batch_max": 32}
        assert code == (1 if any(c["passed"] is False for c in report["checks"]) else 0)

    def test_pin_keeps_client_and_servers_apart_and_gives_their_cpus_back(
            self, services: Services) -> None:
        """pinned_cpus(): this process on one CPU, every server thread on the others (new
        backends too), and afterwards everyone as before."""
        cpus = sorted(os.sched_getaffinity(0))
        postmaster = _postmaster(services)
        pids = asyncio.run(microbench.local_server_pids(services))
        assert postmaster in pids and services.valkey is not None
        assert services.valkey.pid in pids
        before = _affinities(pids)
        mine = os.sched_getaffinity(0)
        with microbench.pinned_cpus(pids) as note:
            assert os.sched_getaffinity(0) == {cpus[0]}
            during = _affinities(pids)
            assert {postmaster, services.valkey.pid} <= set(during)
            assert all(cpus_of == set(cpus[1:]) for cpus_of in during.values()), during
            # A backend forked by the pinned postmaster.
            assert asyncio.run(_backend_affinity(services)) == set(cpus[1:])
            assert note.startswith(f"client on CPU {cpus[0]}")
        assert os.sched_getaffinity(0) == mine
        after = _affinities(pids)
        assert {postmaster, services.valkey.pid} <= set(after)
        assert after == {pid: before[pid] for pid in after}

    def test_pin_refuses_a_single_cpu(self, services: Services) -> None:
        """With one CPU there is nowhere to keep the servers apart: a clear error, and no
        process is moved."""
        mine = os.sched_getaffinity(0)
        postmaster = _postmaster(services)
        theirs = os.sched_getaffinity(postmaster)
        os.sched_setaffinity(0, {min(mine)})
        try:
            with pytest.raises(ValueError, match="--pin needs at least 2 CPUs"), \
                    microbench.pinned_cpus([postmaster]):
                pass
            with pytest.raises(SystemExit):
                microbench.main(["--pin"])
        finally:
            os.sched_setaffinity(0, mine)
        assert os.sched_getaffinity(postmaster) == theirs

    def test_bad_option_is_rejected_before_anything_starts(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid --option fails with the CacheSettings message, naming the field."""
        with pytest.raises(SystemExit):
            microbench.main(["--option", "local_max_entries=-1"])
        assert "local_max_entries" in capsys.readouterr().err
