"""proxies.errors: the one root, and the one problem class every configuration check uses."""

from __future__ import annotations

from proxies.errors import ConfigProblem, ProxyConfigError


class TestConfigProblem:
    def test_says_where_what_and_what_was_found(self) -> None:
        """A problem reads as path: expected ..., found ...."""
        assert str(ConfigProblem("network.faults[0].at_s", "a number of seconds >= 0", "-1")) \
            == "network.faults[0].at_s: expected a number of seconds >= 0, found -1"

    def test_a_huge_path_or_value_is_cut(self) -> None:
        """A path or value from a hostile file is cut to 160 characters, so that one problem
        cannot flood a message; what was expected is always said whole."""
        text = str(ConfigProblem("p" * 1000, "e" * 200, repr("x" * 10_000)))
        path, _, rest = text.partition(": expected ")
        expected, _, found = rest.partition(", found ")
        assert path == "p" * 157 + "..." and expected == "e" * 200
        assert len(found) == 160 and found.endswith("...")

    def test_a_config_error_keeps_its_problems(self) -> None:
        """ProxyConfigError carries every problem, for callers that report them their way."""
        problems = [ConfigProblem("a", "b", "c"), ConfigProblem("d", "e", "f")]
        assert ProxyConfigError("bad", problems=problems).problems == tuple(problems)
