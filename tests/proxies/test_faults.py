"""proxies.faults: the one fault model and its validation."""

from __future__ import annotations

import pytest
from support.toxiproxy_fixtures import PROXY_POSTGRES_LISTENER, PROXY_VALKEY

from proxies.errors import ProxyConfigError
from proxies.faults import Fault, parse_faults


class TestParseFaults:
    """Workload data becomes Faults, or every problem at once, each with its path."""

    def test_valid_faults_and_aliases(self) -> None:
        """Workload data becomes Faults; short proxy names resolve to the run's proxies."""
        faults = parse_faults([
            {"at_s": 1, "duration_s": 2, "proxy": "postgres-listener", "toxic": "reset_peer",
             "attributes": {"timeout": 0}, "stream": "both"},
            {"at_s": 0, "duration_s": 0.5, "proxy": "valkey", "toxic": "down"},
        ])
        assert [f.proxy_name for f in faults] == [PROXY_POSTGRES_LISTENER, PROXY_VALKEY]
        assert faults[0].streams == ("upstream", "downstream") and faults[1].streams == ()

    def test_every_problem_is_reported_with_its_path(self) -> None:
        """All problems of all faults come at once, each with its YAML path."""
        with pytest.raises(ProxyConfigError) as caught:
            parse_faults([
                {"at_s": -1, "duration_s": 0, "proxy": "valkey", "toxic": "latency",
                 "attributes": {"latency": 1.5, "color": 3}},
                {"duration_s": 1, "proxy": "valkey", "toxic": "explode", "stream": "up"},
                "nope",
            ])
        paths = [problem.path for problem in caught.value.problems]
        assert paths == ["network.faults[0].at_s", "network.faults[0].duration_s",
                         "network.faults[0].attributes.latency",
                         "network.faults[0].attributes.color", "network.faults[1].at_s",
                         "network.faults[1].toxic", "network.faults[1].stream",
                         "network.faults[2]"]
        assert str(caught.value.problems[0]) == \
            "network.faults[0].at_s: expected a number of seconds >= 0, found -1"

    def test_fault_validates_on_construction(self) -> None:
        """Constructing an invalid Fault raises ProxyConfigError at once."""
        with pytest.raises(ProxyConfigError, match="toxicity"):
            Fault(at_s=0, duration_s=1, proxy="valkey", toxic="timeout", toxicity=2)

    def test_to_dict_resolves_the_proxy(self) -> None:
        """As metadata a fault names its Toxiproxy proxy, and a down fault has no stream."""
        fault = Fault(at_s=1, duration_s=2, proxy="valkey", toxic="down", label="x")
        assert fault.to_dict() == {"at_s": 1, "duration_s": 2, "proxy": PROXY_VALKEY,
                                   "toxic": "down", "stream": None, "toxicity": 1.0,
                                   "attributes": {}, "label": "x"}
