"""orchestrator.workload: loading, overrides and validation (every problem at once, with its
path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.repo import SUITES, WORKLOADS

from orchestrator.errors import UsageError, WorkloadError
from orchestrator.workload.capacity import (
    Machine,
    capacity_issues,
    check_capacity,
    memory_estimate_bytes,
)
from orchestrator.workload.loading import apply_overrides, load_workload
from orchestrator.workload.model import (
    EXECUTORS,
    NETWORK_MODES,
    PLACEMENT_STRATEGIES,
    READ_OPS,
    ExecutorKind,
    Network,
    NetworkMode,
    PlacementStrategy,
    ReadOp,
    WorkerPlacement,
)
from orchestrator.workload.suite import load_suite
from orchestrator.workload.validation import parse_workload, select_backends
from proxies import ConfigProblem, ProxyConfigError, parse_faults


def _issues(data: object) -> dict[str, str]:
    with pytest.raises(WorkloadError) as info:
        parse_workload(data, source="test.yaml")
    return {issue.path: f"{issue.expected} | {issue.found}" for issue in info.value.issues}


class TestWorkloadFiles:
    """Every shipped workload file is valid and documented."""

    @pytest.mark.parametrize("path", WORKLOADS, ids=[p.name for p in WORKLOADS])
    def test_validates(self, path: Path) -> None:
        """Each workloads/*.yaml loads without a problem."""
        workload = load_workload(path)
        assert workload.backends

    @pytest.mark.parametrize("path", WORKLOADS, ids=[p.name for p in WORKLOADS])
    def test_documented_at_top(self, path: Path) -> None:
        """Each workload file opens with a comment naming itself."""
        assert path.read_text().startswith(f"# {path.name}")

    def test_default_is_the_seed(self) -> None:
        """default.yaml carries the seed harness's defaults."""
        w = load_workload(WORKLOADS[0].parent / "default.yaml")
        assert (w.writers, w.readers, w.write_iterations, w.read_iterations) == (16, 32, 400, 800)
        assert (w.keyspace, w.ttl_s) == (64, 5.0)
        assert [b.name for b in w.backends] == ["postgres-cache", "postgres-no-local-cache",
                                                "postgres-no-notify", "valkey"]

    def test_simulated_network(self) -> None:
        """simulated-network.yaml is the default plus 1.5 ms +/- 0.5 ms."""
        w = load_workload(WORKLOADS[0].parent / "simulated-network.yaml")
        assert (w.network.latency_ms, w.network.jitter_ms) == (1.5, 0.5)
        assert w.network.mode == "auto"


class TestValidation:
    """Invalid workloads are rejected with every problem listed."""

    def test_all_problems_at_once(self) -> None:
        """Unknown keys, wrong types, out-of-range values and unknown backends all appear."""
        issues = _issues({"writers": "many", "readers": -1, "keyspace": 0, "colour": "red",
                          "backends": ["postgres-cache", "memcached"],
                          "network": {"latency_ms": -2, "mode": "warp"}})
        assert set(issues) >= {"writers", "readers", "keyspace", "colour", "backends[1]",
                               "network.latency_ms", "network.mode"}
        assert "'many' (str)" in issues["writers"]
        assert "memcached" in issues["backends[1]"]

    def test_message_names_path_expected_found(self) -> None:
        """The error text has the file, the path, what was expected and what was found."""
        with pytest.raises(WorkloadError) as info:
            parse_workload({"ttl_s": 0}, source="w.yaml")
        text = str(info.value)
        assert text.startswith("w.yaml: 1 problem")
        assert "ttl_s: expected a number > 0 and <= 3,155,760,000, found 0 (int)" in text

    def test_exit_code_is_two(self) -> None:
        """Workload errors map to exit code 2."""
        assert WorkloadError("x", []).exit_code == 2

    def test_nested_unknown_keys(self) -> None:
        """Unknown keys inside nested mappings are reported with their full path."""
        issues = _issues({"key_distribution": {"type": "zipfian", "skew": 1},
                          "network": {"latency_ms": 1, "proxies": {"memcached": "x:1"}}})
        assert "key_distribution.skew" in issues
        assert "network.proxies.memcached" in issues

    def test_custom_backend(self) -> None:
        """A named backend with a type and options is accepted; bad options are not."""
        w = parse_workload({"backends": [{"name": "pg-small", "type": "pgcache",
                                          "options": {"local_max_entries": 16}}]})
        assert w.backends[0].options == {"local_max_entries": 16}
        issues = _issues({"backends": [{"name": "x", "type": "pgcache",
                                        "options": {"dsn": "postgresql://h/db", "nope": 1}}]})
        assert "backends[0].options.dsn" in issues
        assert "backends[0].options.nope" in issues

    def test_get_or_set_and_loader(self) -> None:
        """read_op get_or_set takes a loader (sleep or query); bad ones are named by path."""
        w = parse_workload({"read_op": "get_or_set",
                            "loader": {"type": "query", "ms": 20, "rows": 100}})
        assert (w.read_op, w.loader.type, w.loader.ms, w.loader.rows) == (
            "get_or_set", "query", 20.0, 100)
        assert parse_workload({}).read_op == "get"
        issues = _issues({"read_op": "scan", "loader": {"type": "rpc", "ms": -1, "rows": 0,
                                                        "cost": 1}})
        assert set(issues) == {"read_op", "loader.type", "loader.ms", "loader.rows",
                               "loader.cost"}

    def test_duplicate_backend(self) -> None:
        """The same backend twice is rejected."""
        assert "backends[1]" in _issues({"backends": ["valkey", "valkey"]})

    def test_yaml_null_means_null_backend(self) -> None:
        """An unquoted `null` in the backends list is the null backend."""
        assert parse_workload({"backends": [None]}).backends[0].name == "null"

    def test_thresholds_shape(self) -> None:
        """Threshold conditions are checked for syntax and known backends."""
        issues = _issues({"backends": ["valkey"], "thresholds": {
            "valkey": ["get.p99_ms < 5", "p99 is small"], "redis": ["get.p99_ms < 1"]}})
        assert set(issues) == {"thresholds.valkey[1]", "thresholds.redis"}
        ok = parse_workload({"backends": ["valkey"],
                             "thresholds": {"*": ["get.p99_ms < 5", "stale_rate == 0"]}})
        assert [t.expression for t in ok.thresholds["*"]] == ["get.p99_ms < 5",
                                                               "stale_rate == 0"]

    def test_threshold_problems_each_with_its_path(self) -> None:
        """A bad expression, a wrong shape and an unknown backend are each reported."""
        issues = _issues({"backends": ["valkey"], "thresholds": {
            "*": ["get.p99_ms < 5", "nope", "get.p98_ms < 1"], "valkey": 5, "ghost": []}})
        assert set(issues) == {"thresholds.*[1]", "thresholds.*[2]", "thresholds.valkey",
                               "thresholds.ghost"}
        assert issues["thresholds.*[2]"].startswith("a metric of get")
        assert issues["thresholds.*[2]"].endswith("| 'p98_ms'")

    def test_network_faults_shape(self) -> None:
        """Faults need Toxiproxy and must name a known proxy and toxic."""
        issues = _issues({"network": {"mode": "toxiproxy", "faults": [
            {"at_s": 1, "duration_s": 2, "proxy": "postgres", "toxic": "explode"}]}})
        assert "network.faults[0].toxic" in issues
        issues = _issues({"network": {"mode": "inprocess", "latency_ms": 1, "faults": [
            {"at_s": 1, "duration_s": 2, "proxy": "valkey", "toxic": "down"}]}})
        assert "network.faults" in issues

    def test_fault_problems_come_with_other_problems(self) -> None:
        """Invalid faults are listed together with the workload's other problems."""
        issues = _issues({"writers": -1, "network": {"mode": "toxiproxy", "faults": [
            {"at_s": -1, "duration_s": 1, "proxy": "valkey", "toxic": "down", "colour": 1}]}})
        assert {"writers", "network.faults[0].at_s", "network.faults[0].colour"} <= set(issues)
        assert issues["network.faults[0].at_s"] == "a number of seconds >= 0 | -1"

    def test_one_problem_class_for_the_workload_and_its_faults(self) -> None:
        """A fault's problem (found by proxies) and a key's (found here) are one class,
        proxies.ConfigProblem, the fault's passed on as it was found."""
        with pytest.raises(WorkloadError) as info:
            parse_workload({"writers": -1, "network": {"mode": "toxiproxy", "faults": [
                {"at_s": -1, "duration_s": 1, "proxy": "valkey", "toxic": "down"}]}})
        issues = {issue.path: issue for issue in info.value.issues}
        assert {type(issues["writers"]), type(issues["network.faults[0].at_s"])} == {
            ConfigProblem}
        with pytest.raises(ProxyConfigError) as fault:
            parse_faults([{"at_s": -1, "duration_s": 1, "proxy": "valkey", "toxic": "down"}],
                         "network.faults")
        assert fault.value.problems == (issues["network.faults[0].at_s"],)

    def test_faults_become_the_fault_model(self) -> None:
        """Valid faults are proxies.Fault objects with their route resolved."""
        w = parse_workload({"network": {"mode": "toxiproxy", "faults": [
            {"at_s": 1, "duration_s": 2, "proxy": "valkey", "toxic": "down"}]}})
        (fault,) = w.network.faults
        assert (fault.proxy, fault.proxy_name) == ("valkey", "pgcache-valkey")
        assert w.network.to_dict()["faults"][0]["proxy"] == "pgcache-valkey"

    def test_latency_needs_a_mode(self) -> None:
        """Latency implies in-process emulation, but not with an explicit mode none."""
        assert parse_workload({"network": {"latency_ms": 2}}).network.mode == "inprocess"
        assert "network.mode" in _issues({"network": {"mode": "none", "latency_ms": 2}})

    def test_processes(self) -> None:
        """processes is 'auto' or a positive integer."""
        assert parse_workload({"processes": "auto"}).processes is None
        assert parse_workload({"processes": 3}).process_count == 3
        assert "processes" in _issues({"processes": "many"})

    def test_value_size_range(self) -> None:
        """value_size is a size or an ordered {min, max}."""
        w = parse_workload({"value_size": {"min": 10, "max": 20}})
        assert (w.value_size_min, w.value_size_max) == (10, 20)
        assert "value_size.max" in _issues({"value_size": {"min": 20, "max": 10}})

    def test_not_a_mapping(self) -> None:
        """A YAML list at the top is rejected."""
        assert "" in _issues([1, 2])

    def test_bad_yaml_file(self, tmp_path: Path) -> None:
        """A YAML syntax error is reported with its line."""
        path = tmp_path / "bad.yaml"
        path.write_text("writers: [1,\n")
        with pytest.raises(WorkloadError) as info:
            load_workload(path)
        assert "line" in info.value.issues[0].path

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a workload error, not a traceback."""
        with pytest.raises(WorkloadError):
            load_workload(tmp_path / "nope.yaml")


class TestSelectBackends:
    """--backends picks the workload's backends or presets, and names the unknown ones."""

    def test_workload_and_preset_names(self) -> None:
        """A backend of the workload and a preset name are both accepted, in the given order."""
        w = parse_workload({"backends": [{"name": "pg-small", "type": "pgcache"}]})
        chosen = select_backends(w, ["null", "pg-small"])
        assert [(b.name, b.type) for b in chosen] == [("null", "null"), ("pg-small", "pgcache")]

    def test_unknown_name(self) -> None:
        """An unknown name is a workload error at --backends[i]."""
        w = parse_workload({})
        with pytest.raises(WorkloadError) as info:
            select_backends(w, ["valkey", "memcached"])
        assert [i.path for i in info.value.issues] == ["--backends[1]"]


class TestOverrides:
    """--set path=value overrides edit the data before validation."""

    def test_nested_and_typed(self) -> None:
        """Values are YAML; dotted paths create mappings as needed."""
        data = apply_overrides({"writers": 1}, ["writers=3", "network.latency_ms=1.5",
                                                "backends=[valkey, 'null']"])
        assert data == {"writers": 3, "network": {"latency_ms": 1.5},
                        "backends": ["valkey", "null"]}

    def test_list_index(self) -> None:
        """A numeric path part indexes a list."""
        assert apply_overrides({"backends": ["a", "b"]}, ["backends.1=c"]) == {
            "backends": ["a", "c"]}

    def test_bad_override(self) -> None:
        """An override without '=' is a usage error."""
        with pytest.raises(UsageError):
            apply_overrides({}, ["writers"])

    def test_original_untouched(self) -> None:
        """The input data is not modified."""
        data = {"network": {"latency_ms": 1}}
        apply_overrides(data, ["network.latency_ms=2"])
        assert data == {"network": {"latency_ms": 1}}


class TestHostileValues:
    """Values that would pass a type check but break a run are refused with their path."""

    @pytest.mark.parametrize(("data", "path"), [
        ({"ttl_s": float("nan")}, "ttl_s"),
        ({"duration_s": float("inf")}, "duration_s"),
        ({"warmup_s": float("inf")}, "warmup_s"),
        ({"think_time_ms": float("nan")}, "think_time_ms"),
        ({"think_time_ms": {"writes": float("-inf")}}, "think_time_ms.writes"),
        ({"network": {"latency_ms": float("nan")}}, "network.latency_ms"),
        ({"backends": [{"name": "v", "type": "valkey",
                        "options": {"socket_timeout": float("inf")}}]},
         "backends[0].options.socket_timeout"),
        ({"network": {"mode": "toxiproxy", "faults": [
            {"at_s": float("nan"), "duration_s": 1, "proxy": "valkey", "toxic": "down"}]}},
         "network.faults[0].at_s"),
    ])
    def test_nan_and_infinity_anywhere(self, data: dict[str, object], path: str) -> None:
        """A NaN or an infinity is reported once, at its path, wherever it is."""
        with pytest.raises(WorkloadError) as info:
            parse_workload(data)
        assert [(i.path, i.expected) for i in info.value.issues] == [(path, "a finite number")]

    def test_numbers_have_upper_bounds(self) -> None:
        """Huge but finite durations, TTLs and counts are refused too."""
        issues = _issues({"warmup_s": 1e300, "ttl_s": 1e300, "duration_s": 1e12,
                          "think_time_ms": 1e300})
        assert set(issues) == {"warmup_s", "ttl_s", "duration_s", "think_time_ms"}
        assert "write_iterations" in _issues({"write_iterations": 10**15})
        ok = parse_workload({"duration_s": 7 * 86400, "warmup_s": 86400})
        assert (ok.duration_s, ok.warmup_s) == (604800.0, 86400.0)
        assert set(_issues({"duration_s": 7 * 86400 + 1, "warmup_s": 86401})) == {
            "duration_s", "warmup_s"}

    def test_duration_and_iterations_contradict(self) -> None:
        """A file with both duration_s and iterations names both."""
        issues = _issues({"duration_s": 5, "write_iterations": 3})
        assert set(issues) == {"duration_s"}
        assert "either duration_s or write_iterations" in issues["duration_s"]
        assert parse_workload({"duration_s": None, "write_iterations": 3}).duration_s is None

    def test_think_time_and_target_rate_contradict(self) -> None:
        """A closed-loop pause and an open-loop rate for the same kind contradict."""
        issues = _issues({"think_time_ms": {"writes": 1}, "target_rate": {"writes": 100}})
        assert set(issues) == {"think_time_ms.writes"}
        ok = parse_workload({"think_time_ms": {"reads": 1}, "target_rate": {"writes": 100}})
        assert ok.target_rate.writes == 100

    def test_distribution_parameter_of_another_type(self) -> None:
        """theta does nothing for a uniform distribution: it is refused."""
        assert "key_distribution.theta" in _issues({"key_distribution": {"type": "uniform",
                                                                          "theta": 1.2}})

    def test_pgcache_options_checked_by_cache_settings(self) -> None:
        """Every bad pgcache option is found by CacheSettings itself, each at its path."""
        issues = _issues({"backends": [{"name": "pg", "type": "pgcache", "options": {
            "max_pool_size": -1, "local_ttl_seconds": "soon", "local_max_entries": 8}}]})
        assert set(issues) == {"backends[0].options.max_pool_size",
                               "backends[0].options.local_ttl_seconds"}
        assert "must be >= 1, got -1" in issues["backends[0].options.max_pool_size"]
        assert "'soon'" in issues["backends[0].options.local_ttl_seconds"]

    def test_valkey_options_checked_by_the_client(self) -> None:
        """What redis-py refuses when it builds a client and a connection is refused here."""
        issues = _issues({"backends": [{"name": "v", "type": "valkey",
                                        "options": {"max_connections": -1}}]})
        assert "max_connections" in issues["backends[0].options"]
        ok = parse_workload({"backends": [{"name": "v", "type": "valkey",
                                           "options": {"max_connections": 8}}]})
        assert ok.backends[0].options == {"max_connections": 8}

    def test_allowed_error_rate(self) -> None:
        """allowed_error_rate is a share from 0 to 1, 0 by default."""
        assert parse_workload({}).allowed_error_rate == 0.0
        assert parse_workload({"allowed_error_rate": 0.25}).allowed_error_rate == 0.25
        assert "allowed_error_rate" in _issues({"allowed_error_rate": 1.5})

    def test_problems_listed_are_capped(self) -> None:
        """Thousands of problems are all kept, but the message lists 20 and says how many more."""
        with pytest.raises(WorkloadError) as info:
            parse_workload({f"k{i}": i for i in range(5000)}, source="w.yaml")
        assert len(info.value.issues) == 5000
        text = str(info.value)
        assert text.startswith("w.yaml: 5,000 problems:")
        assert text.count("\n  - ") == WorkloadError.MAX_LISTED
        assert text.endswith("  ... and 4,980 more")

    def test_huge_values_are_described_briefly(self) -> None:
        """A huge value is described in a few dozen characters, never in full."""
        with pytest.raises(WorkloadError) as info:
            parse_workload({"writers": [list(range(1000))] * 1000})
        assert len(str(info.value)) < 400


class TestFiles:
    """Files a user may hand over by mistake are refused with the file named."""

    @pytest.mark.parametrize(("content", "path", "found"), [
        (b"", "(document)", "an empty document"),
        (b"# nothing but a comment\n", "(document)", "only comments, or a bare null"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "(file)", "the byte 0x89 at offset 0"),
        (b"writers: 1\nwriters: 2\n", "writers", "'writers' again at line 2"),
    ])
    def test_refused(self, tmp_path: Path, content: bytes, path: str, found: str) -> None:
        """Empty, binary and duplicate-key files are workload errors naming the file."""
        file = tmp_path / "w.yaml"
        file.write_bytes(content)
        with pytest.raises(WorkloadError) as info:
            load_workload(file)
        (issue,) = info.value.issues
        assert (issue.path, found in issue.found) == (path, True)
        assert str(info.value).startswith(str(file))

    def test_explicit_empty_mapping_means_defaults(self, tmp_path: Path) -> None:
        """`{}` is a deliberate "every default"."""
        file = tmp_path / "w.yaml"
        file.write_text("{}\n")
        assert load_workload(file).writers == 16

    def test_override_replaces_the_other_measure(self, tmp_path: Path) -> None:
        """--set duration_s replaces the file's iterations, and the other way round."""
        file = tmp_path / "w.yaml"
        file.write_text("write_iterations: 3\nread_iterations: 4\n")
        assert load_workload(file, ["duration_s=2"]).duration_s == 2.0
        file.write_text("duration_s: 5\n")
        w = load_workload(file, ["write_iterations=7"])
        assert (w.duration_s, w.write_iterations) == (None, 7)
        with pytest.raises(WorkloadError):
            load_workload(file, ["write_iterations=7", "duration_s=3"])

    def test_override_values_are_read_safely(self) -> None:
        """An alias in a --set value is a usage error."""
        with pytest.raises(UsageError, match="aliases"):
            apply_overrides({}, ["backends=[&a x, *a]"])
        with pytest.raises(UsageError):
            apply_overrides({"backends": ["a"]}, ["backends.\u00b2=x"])


class TestEnums:
    """Network mode, executor, placement strategy and read op are enum members in the model,
    equal to their words, and plain words again wherever the model is written out."""

    def test_the_model_holds_members(self) -> None:
        """Each closed set of words becomes its enum's member when validated."""
        w = parse_workload({"network": {"mode": "toxiproxy"}, "read_op": "get_or_set",
                            "executor": "ray", "placement": {"strategy": "STRICT_SPREAD"}})
        assert w.network.mode is NetworkMode.TOXIPROXY and w.read_op is ReadOp.GET_OR_SET
        assert w.executor is ExecutorKind.RAY
        assert w.placement.strategy is PlacementStrategy.STRICT_SPREAD
        defaults = parse_workload({"network": {"latency_ms": 1}})
        assert (defaults.network.mode, defaults.read_op, defaults.executor,
                defaults.placement.strategy) == (NetworkMode.INPROCESS, ReadOp.GET,
                                                 ExecutorKind.LOCAL, PlacementStrategy.SPREAD)
        assert all(type(m) is NetworkMode for m in (defaults.network.mode,
                                                     parse_workload({}).network.mode))

    def test_a_model_built_from_words_holds_members(self) -> None:
        """Network and WorkerPlacement made by hand from the words hold the members."""
        assert Network(mode="toxiproxy").mode is NetworkMode.TOXIPROXY  # type: ignore[arg-type]
        placement = WorkerPlacement(strategy="STRICT_SPREAD")  # type: ignore[arg-type]
        assert placement.strategy is PlacementStrategy.STRICT_SPREAD
        with pytest.raises(ValueError):
            Network(mode="carrier-pigeon")  # type: ignore[arg-type]

    def test_written_out_as_plain_words(self) -> None:
        """What the results record (runs.network, placement) carries plain strings, which any
        YAML or JSON writer takes."""
        w = parse_workload({"network": {"mode": "auto"}, "executor": "ray"})
        network, placement = w.network.to_dict(), w.placement.to_dict()
        assert type(network["mode"]) is str and type(placement["strategy"]) is str
        assert yaml.safe_load(yaml.safe_dump(network))["mode"] == "auto"

    def test_the_words_are_the_enums(self) -> None:
        """The choices validation offers are exactly the enums' words."""
        assert NETWORK_MODES == ("none", "inprocess", "toxiproxy", "auto")
        assert (READ_OPS, EXECUTORS, PLACEMENT_STRATEGIES) == (
            ("get", "get_or_set"), ("local", "ray"), ("SPREAD", "STRICT_SPREAD"))
        assert _issues({"network": {"mode": "carrier-pigeon"}})["network.mode"].startswith(
            "one of none, inprocess, toxiproxy, auto |")


class TestExecutor:
    """executor, ray_address and placement: checked, and only with executor ray."""

    def test_defaults(self) -> None:
        """Without the keys: the local executor; Ray's defaults are auto and SPREAD."""
        w = parse_workload({})
        assert (w.executor, w.ray_address) == ("local", "auto")
        assert w.placement.to_dict() == {"strategy": "SPREAD", "workers_per_node": 1,
                                         "cpus_per_worker": 1.0}

    def test_ray(self) -> None:
        """Every key with executor ray."""
        w = parse_workload({"executor": "ray", "ray_address": "ray://head:10001",
                            "placement": {"strategy": "STRICT_SPREAD", "workers_per_node": 4,
                                          "cpus_per_worker": 0}})
        assert (w.executor, w.ray_address) == ("ray", "ray://head:10001")
        assert (w.placement.strategy, w.placement.workers_per_node,
                w.placement.cpus_per_worker) == ("STRICT_SPREAD", 4, 0.0)

    @pytest.mark.parametrize("address", ["auto", "local", "10.0.0.5:6379", "head:6379",
                                         "ray://head.internal:10001", "ray://[fd00::1]:10001"])
    def test_addresses(self, address: str) -> None:
        """The address forms Ray takes."""
        assert parse_workload({"executor": "ray", "ray_address": address}).ray_address == address

    def test_every_problem(self) -> None:
        """Bad values, each at its path."""
        issues = _issues({"executor": "kubernetes", "ray_address": "http://head",
                          "placement": {"strategy": "PACK", "workers_per_node": 0,
                                        "cpus_per_worker": -1, "gpus": 1}})
        assert set(issues) == {"executor", "ray_address", "placement.strategy",
                               "placement.workers_per_node", "placement.cpus_per_worker",
                               "placement.gpus"}
        assert "one of local, ray" in issues["executor"]

    def test_ray_keys_need_executor_ray(self) -> None:
        """ray_address or placement with the local executor contradict it."""
        issues = _issues({"ray_address": "auto", "placement": {"strategy": "SPREAD"}})
        assert "only with executor: ray" in issues["ray_address"]
        assert "only with executor: ray" in issues["placement"]


# The machine this project's figures come from: 2 CPUs, 24 GiB.
SMALL = Machine(cpus=2, memory_bytes=24 * 1024**3)
_GIB = 1024**3


class TestCapacity:
    """Worker processes and memory beyond what the machine holds are refused at their path."""

    def test_processes_beyond_eight_per_cpu(self) -> None:
        """processes: 512 on 2 CPUs is refused by both limits, naming the limit and --force;
        16 (8 per CPU) fits."""
        w = parse_workload({"processes": 512, "backends": ["null"]})
        issues = {i.expected: i.found for i in capacity_issues(w, SMALL)}
        assert [i.path for i in capacity_issues(w, SMALL)] == ["processes", "processes"]
        assert issues["at most 16 worker processes on this machine (8 per CPU, 2 CPUs; "
                      "--force runs more)"] == "512"
        memory = [found for expected, found in issues.items() if "fit in 12.0 GiB" in expected]
        assert memory == ["512 processes x 1 instances, about 24.0 GiB (48 MiB a process, "
                          "1 MiB an instance, and the local caches)"]
        assert capacity_issues(parse_workload({"processes": 16}), SMALL) == []

    def test_memory_counts_instances_and_local_caches(self) -> None:
        """The estimate grows with instances and their local caches' values, and is refused
        at instances_per_process past half the machine's memory."""
        w = parse_workload({"processes": 16, "instances_per_process": 256, "keyspace": 100_000,
                            "value_size": 4096, "backends": ["postgres-cache"]})
        cache = 4096 * (4096 + 200)  # the default local_max_entries, each value and entry
        assert memory_estimate_bytes(w) == 16 * 48 * 2**20 + 4080 * 2**20 + 4096 * cache
        assert memory_estimate_bytes(w) > 12 * _GIB
        (issue,) = capacity_issues(w, SMALL)
        assert issue.path == "instances_per_process"
        assert "16 processes x 256 instances, about 71.9 GiB" in issue.found
        without = parse_workload({"processes": 16, "instances_per_process": 256,
                                  "backends": ["valkey"]})
        assert capacity_issues(without, SMALL) == []

    def test_ray_workers_are_not_this_machine_s(self) -> None:
        """With executor ray the workers run on the cluster: nothing is judged here."""
        w = parse_workload({"processes": 512, "executor": "ray"})
        assert capacity_issues(w, SMALL) == []

    def test_unknown_memory_judges_processes_only(self) -> None:
        """Where MemTotal cannot be read, only the CPU limit applies."""
        w = parse_workload({"processes": 16, "instances_per_process": 256})
        assert capacity_issues(w, Machine(cpus=2, memory_bytes=None)) == []

    def test_suite_points(self) -> None:
        """A suite's sweep is judged point by point, each issue at its point's path."""
        suite = load_suite(SUITES[0])
        points = [(f"point {p.key}: ", p.workload) for p in suite.points]
        check_capacity(points, "suite.yaml", SMALL)
        tiny = Machine(cpus=2, memory_bytes=256 * 2**20)  # 128 MiB for the workers
        with pytest.raises(WorkloadError) as info:
            check_capacity(points, "suite.yaml", tiny)
        paths = [i.path for i in info.value.issues]
        assert "point latency_ms=0.5 read_share=0.9 instances=32: instances_per_process" \
            in paths
        assert str(info.value).startswith("suite.yaml: ")

    @pytest.mark.parametrize("path", WORKLOADS + SUITES, ids=[p.name for p in WORKLOADS + SUITES])
    def test_shipped_files_fit_two_cpus(self, path: Path) -> None:
        """Every shipped workload and suite (and its quick variant) fits a 2-CPU machine."""
        if path in SUITES:
            for quick in (False, True):
                suite = load_suite(path, quick=quick)
                check_capacity([(p.key, p.workload) for p in suite.points], path.name, SMALL)
        else:
            assert capacity_issues(load_workload(path), SMALL) == []
