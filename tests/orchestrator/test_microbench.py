"""orchestrator.microbench: the pgcache micro-benchmark runs end to end with tiny settings."""

from __future__ import annotations

import json

import pytest

from orchestrator import microbench
from orchestrator.services import Services


class TestMicrobench:
    def test_tiny_run_reports_every_target(self, services: Services,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
        """`python -m orchestrator.microbench --json` measures every target against the servers."""
        monkeypatch.setenv("POSTGRES_DSN", services.postgres_dsn)
        monkeypatch.setenv("VALKEY_URL", services.valkey_url)
        code = microbench.main(["--iterations", "50", "--duration", "0.5", "--json",
                                "--option", "write_batch_max=32"])
        report = json.loads(capsys.readouterr().out)
        names = [check["name"] for check in report["checks"]]
        assert names[:6] == ["get, local hit p50", "get, local miss p50", "set p50",
                             "16-writer throughput", "invalidation lag p50",
                             "invalidation lag p99"]
        # The lease's, the bounded table's and compression's rows come between.
        assert "redis-py GET p50" in names[6:]
        assert report["options"] == {"write_batch_max": 32}
        assert code == (1 if any(c["passed"] is False for c in report["checks"]) else 0)

    def test_bad_option_is_rejected_before_anything_starts(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        """An invalid --option fails with the CacheSettings message, naming the field."""
        with pytest.raises(SystemExit):
            microbench.main(["--option", "local_max_entries=-1"])
        assert "local_max_entries" in capsys.readouterr().err
