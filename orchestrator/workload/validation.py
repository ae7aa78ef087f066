"""Turn workload data into a :class:`~orchestrator.workload.model.Workload`, reporting every issue.

Each problem is reported with its YAML path, what was expected and what was found; nothing is
raised until the whole document has been checked, so one run of ``validate`` lists them all.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from orchestrator.backends.registry import PRESETS, TYPES, option_issues
from orchestrator.errors import ThresholdError, WorkloadError
from orchestrator.workload.model import (
    DISTRIBUTIONS,
    EXECUTORS,
    LOADER_TYPES,
    NETWORK_MODES,
    PLACEMENT_STRATEGIES,
    READ_OPS,
    BackendSpec,
    ExecutorKind,
    KeyDistribution,
    LoaderSpec,
    Network,
    NetworkMode,
    PlacementStrategy,
    Rates,
    ReadOp,
    WorkerPlacement,
    Workload,
)
from orchestrator.workload.thresholds import ALL_BACKENDS, Threshold, parse_threshold
from proxies import ROUTE_NAMES, ConfigProblem, Fault, ProxyConfigError, parse_faults
from proxies.toxiproxy import DEFAULT_URL

DEFAULT_BACKENDS = ("postgres-cache", "postgres-no-local-cache", "postgres-no-notify", "valkey")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MISSING = object()


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 60


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = _REPR.repr(value)  # bounded: never the repr of a whole huge value
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``; did you mean 'writers'?`` when a known name is close to ``word``, else ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Checker:
    """Collects issues while reading fields of one mapping."""

    def __init__(self, issues: list[ConfigProblem]) -> None:
        self.issues = issues

    def add(self, path: str, expected: str, found: Any, *, raw: bool = False) -> None:
        self.issues.append(ConfigProblem(path, expected, found if raw else _describe(found)))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(path, "a mapping", value)
            return {}
        for key in value:
            if key not in allowed:
                self.add(f"{path}.{key}" if path else str(key),
                         f"one of the known keys ({', '.join(allowed)})",
                         "an unknown key" + did_you_mean(key, allowed), raw=True)
        return value

    def integer(self, data: Mapping[str, Any], key: str, path: str, default: int, *,
                minimum: int | None = None, maximum: int | None = None) -> int:
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(_join(path, key), _range_text("an integer", minimum, maximum), value)
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.add(_join(path, key), _range_text("an integer", minimum, maximum), value)
            return default
        return value

    def number(self, data: Mapping[str, Any], key: str, path: str, default: float | None, *,
               minimum: float | None = None, maximum: float | None = None,
               exclusive_min: bool = False, nullable: bool = False) -> float | None:
        value = data.get(key, _MISSING)
        if value is _MISSING or (value is None and nullable):
            return default if value is _MISSING else None
        return self.number_value(value, _join(path, key), default, minimum=minimum,
                                 maximum=maximum, exclusive_min=exclusive_min)

    def number_value(self, value: Any, path: str, default: float | None, *,
                     minimum: float | None = None, maximum: float | None = None,
                     exclusive_min: bool = False) -> float | None:
        low = "> " if exclusive_min else ">= "
        expected = "a number" + (f" {low}{_bound(minimum)}" if minimum is not None else "") + (
            f" and <= {_bound(maximum)}" if maximum is not None else "")
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value)):
            self.add(path, expected, value)
            return default
        too_low = minimum is not None and (value <= minimum if exclusive_min else value < minimum)
        if too_low or (maximum is not None and value > maximum):
            self.add(path, expected, value)
            return default
        return float(value)

    def string(self, data: Mapping[str, Any], key: str, path: str, default: str, *,
               choices: tuple[str, ...] | None = None) -> str:
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or (choices is not None and value not in choices):
            self.add(_join(path, key), f"one of {', '.join(choices)}" if choices else "a string",
                     value)
            return default
        return value


def _bound(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:g}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _range_text(kind: str, minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    return kind


# The keys a workload file may have (docs/workloads.md documents exactly these; a test
# keeps the two in step), and those of its ``network`` and ``placement`` mappings.
WORKLOAD_KEYS = (
    "name", "description", "seed", "processes", "instances_per_process", "writers",
    "readers", "write_iterations", "read_iterations", "duration_s", "warmup_s",
    "keyspace", "key_prefix", "key_distribution", "value_size", "ttl_s", "think_time_ms",
    "target_rate", "delete_ratio", "prefill", "read_op", "loader", "backends", "repeat",
    "network", "thresholds", "allowed_error_rate", "executor", "ray_address", "placement")
NETWORK_KEYS = ("mode", "latency_ms", "jitter_ms", "toxiproxy_url", "proxies", "faults")
PLACEMENT_KEYS = ("strategy", "workers_per_node", "cpus_per_worker")
# Upper bounds that keep every number usable (a sleep, a nanosecond count, a TTL) downstream.
_MAX_DURATION_S = 7 * 86400.0
_MAX_WARMUP_S = 86400.0
_MAX_TTL_S = 100 * 365.25 * 86400  # as pgcache's own limit
_MAX_THINK_MS = 3_600_000.0
_MAX_RATE = 1e9
_MAX_ITERATIONS = 10**12
# Each instance holds its own connections (pgcache: a pool and a listener; valkey-tracking:
# two): beyond this, one process's instances would exhaust a server's connection limit.
MAX_INSTANCES_PER_PROCESS = 256


def parse_workload(data: Any, *, source: str = "<workload>", text: str = "",
                   default_name: str = "workload") -> Workload:
    """Validate workload data and build the model; raise WorkloadError with every issue."""
    walked = list(_non_finite(data, ""))
    issues: list[ConfigProblem] = list(walked)
    c = _Checker(issues)
    if data is None:
        data = {}
    top = c.mapping(data, "", WORKLOAD_KEYS)
    name = c.string(top, "name", "", default_name)
    processes: int | None = None
    if top.get("processes", "auto") != "auto":
        processes = c.integer(top, "processes", "", 1, minimum=1, maximum=1024)
        if isinstance(top.get("processes"), str):
            issues[-1] = ConfigProblem("processes", "'auto' or an integer >= 1",
                                       _describe(top["processes"]))
    writers = c.integer(top, "writers", "", 16, minimum=0, maximum=100_000)
    readers = c.integer(top, "readers", "", 32, minimum=0, maximum=100_000)
    if "writers" in top and "readers" in top and writers + readers == 0:
        c.add("writers", "writers + readers >= 1", "0 writers and 0 readers", raw=True)
    duration = c.number(top, "duration_s", "", None, minimum=0, exclusive_min=True,
                        maximum=_MAX_DURATION_S, nullable=True)
    value_min, value_max = _value_size(c, top.get("value_size", 256))
    think = _rates(c, top.get("think_time_ms", 0.0), "think_time_ms", minimum=0.0,
                   maximum=_MAX_THINK_MS)
    rate = _rates(c, top.get("target_rate"), "target_rate", minimum=0.0, exclusive=True,
                  maximum=_MAX_RATE)
    _contradictions(c, top, duration, think, rate)
    backends = _backends(c, top.get("backends", list(DEFAULT_BACKENDS)))
    network = _network(c, top.get("network"))
    thresholds = _thresholds(c, top.get("thresholds"), {b.name for b in backends})
    executor = ExecutorKind(c.string(top, "executor", "", ExecutorKind.LOCAL,
                                     choices=EXECUTORS))
    # With an executor that is not one, whether the Ray keys fit it cannot be said.
    said = executor if top.get("executor", ExecutorKind.LOCAL) in EXECUTORS else None
    ray_address = _ray_address(c, top, said)
    placement = _placement(c, top, said)
    workload = Workload(
        name=name,
        description=c.string(top, "description", "", ""),
        seed=c.integer(top, "seed", "", 42, minimum=0, maximum=2**63 - 1),
        processes=processes,
        instances_per_process=c.integer(top, "instances_per_process", "", 1, minimum=1,
                                        maximum=MAX_INSTANCES_PER_PROCESS),
        writers=writers,
        readers=readers,
        write_iterations=c.integer(top, "write_iterations", "", 400, minimum=0,
                                   maximum=_MAX_ITERATIONS),
        read_iterations=c.integer(top, "read_iterations", "", 800, minimum=0,
                                  maximum=_MAX_ITERATIONS),
        duration_s=duration,
        warmup_s=c.number(top, "warmup_s", "", 0.0, minimum=0.0, maximum=_MAX_WARMUP_S) or 0.0,
        keyspace=c.integer(top, "keyspace", "", 64, minimum=1, maximum=100_000_000),
        key_prefix=c.string(top, "key_prefix", "", "key:"),
        key_distribution=_distribution(c, top.get("key_distribution", "uniform")),
        value_size_min=value_min,
        value_size_max=value_max,
        ttl_s=c.number(top, "ttl_s", "", 5.0, minimum=0, exclusive_min=True,
                       maximum=_MAX_TTL_S) or 5.0,
        think_time_ms=think,
        target_rate=rate,
        delete_ratio=c.number(top, "delete_ratio", "", 0.0, minimum=0.0, maximum=1.0) or 0.0,
        prefill=_boolean(c, top, "prefill", False),
        read_op=ReadOp(c.string(top, "read_op", "", ReadOp.GET, choices=READ_OPS)),
        loader=_loader(c, top.get("loader")),
        backends=backends,
        repeat=c.integer(top, "repeat", "", 1, minimum=1, maximum=1000),
        network=network,
        thresholds=thresholds,
        allowed_error_rate=c.number(top, "allowed_error_rate", "", 0.0, minimum=0.0,
                                    maximum=1.0) or 0.0,
        executor=executor,
        ray_address=ray_address,
        placement=placement,
        raw=top,
        source=source,
        text=text,
    )
    if issues:
        # A non-finite number is reported once, by the walk, not again by its field's check.
        non_finite = {issue.path for issue in walked}
        raise WorkloadError(source, walked + [i for i in issues[len(walked):]
                                              if i.path not in non_finite])
    return workload


def _non_finite(data: Any, path: str) -> Iterator[ConfigProblem]:
    """Every NaN or infinity anywhere in the document (options and faults included): no
    setting means anything with one."""
    stack = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            yield ConfigProblem(where or "(document)", "a finite number", _describe(value))
        elif isinstance(value, Mapping):
            stack.extend((v, _join(where, str(k))) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))


def _contradictions(c: _Checker, top: Mapping[str, Any], duration: float | None,
                    think: Rates, rate: Rates) -> None:
    """Settings that each make sense alone but not together."""
    if duration is not None:
        counted = [k for k in ("write_iterations", "read_iterations") if k in top]
        if counted:
            c.add("duration_s", f"either duration_s or {' and '.join(counted)} (a pass runs "
                  "for a time or for a number of operations, not both)",
                  f"duration_s {duration:g} and {counted[0]} {top[counted[0]]!r}", raw=True)
    for kind in ("writes", "reads"):
        pause, target = getattr(think, kind), getattr(rate, kind)
        if pause and target:
            c.add(f"think_time_ms.{kind}" if isinstance(top.get("think_time_ms"), Mapping)
                  else "think_time_ms",
                  f"no think time for {kind} with a target_rate (an open loop paces itself)",
                  f"think_time_ms {pause:g} and target_rate {target:g} for {kind}", raw=True)


def _loader(c: _Checker, value: Any) -> LoaderSpec:
    path = "loader"
    data = c.mapping(value, path, ("type", "ms", "rows"))
    kind = c.string(data, "type", path, "sleep", choices=LOADER_TYPES)
    return LoaderSpec(
        type=kind,
        ms=c.number(data, "ms", path, 10.0, minimum=0.0, maximum=600_000.0) or 0.0,
        rows=c.integer(data, "rows", path, 1, minimum=1, maximum=10_000_000),
    )


# ``auto``, ``local``, ``ray://host:port`` (the Ray client) or ``host:port`` (a cluster's GCS).
_RAY_ADDRESS = re.compile(
    r"^(auto|local|(ray://)?([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5})$")


def _ray_address(c: _Checker, top: Mapping[str, Any], executor: ExecutorKind | None) -> str:
    address = c.string(top, "ray_address", "", "auto")
    if "ray_address" in top and isinstance(top["ray_address"], str):
        if not _RAY_ADDRESS.match(address):
            c.add("ray_address", "auto, local, ray://HOST:PORT (the Ray client) or HOST:PORT "
                  "(a cluster's head)", address)
        elif executor == ExecutorKind.LOCAL:
            c.add("ray_address", "ray_address only with executor: ray (the local executor "
                  "runs no Ray)", address)
    return address


def _placement(c: _Checker, top: Mapping[str, Any],
               executor: ExecutorKind | None) -> WorkerPlacement:
    path = "placement"
    value = top.get(path)
    data = c.mapping(value, path, PLACEMENT_KEYS)
    if value is not None and executor == ExecutorKind.LOCAL:
        c.add(path, "placement only with executor: ray (the local executor places nothing)",
              value)
    return WorkerPlacement(
        strategy=PlacementStrategy(c.string(data, "strategy", path, PlacementStrategy.SPREAD,
                                            choices=PLACEMENT_STRATEGIES)),
        workers_per_node=c.integer(data, "workers_per_node", path, 1, minimum=1,
                                   maximum=1024),
        cpus_per_worker=c.number(data, "cpus_per_worker", path, 1.0, minimum=0.0,
                                 maximum=1024.0) or 0.0,
    )


def _boolean(c: _Checker, data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        c.add(key, "true or false", value)
        return default
    return value


def _value_size(c: _Checker, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1 or value > 64 * 1024 * 1024:
            c.add("value_size", "a size in bytes from 1 to 67108864, or {min, max}", value)
            return 256, 256
        return value, value
    data = c.mapping(value, "value_size", ("min", "max"))
    if not isinstance(value, Mapping):
        return 256, 256
    low = c.integer(data, "min", "value_size", 256, minimum=1, maximum=64 * 1024 * 1024)
    high = c.integer(data, "max", "value_size", low, minimum=1, maximum=64 * 1024 * 1024)
    if high < low:
        c.add("value_size.max", f"a size >= value_size.min ({low})", high)
        return low, low
    return low, high


def _rates(c: _Checker, value: Any, path: str, *, minimum: float, maximum: float,
           exclusive: bool = False) -> Rates:
    if value is None:
        return Rates()
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = c.number_value(value, path, None, minimum=minimum, maximum=maximum,
                                exclusive_min=exclusive)
        return Rates(number, number)
    data = c.mapping(value, path, ("writes", "reads"))
    return Rates(
        c.number(data, "writes", path, None, minimum=minimum, maximum=maximum,
                 exclusive_min=exclusive, nullable=True),
        c.number(data, "reads", path, None, minimum=minimum, maximum=maximum,
                 exclusive_min=exclusive, nullable=True),
    )


_DISTRIBUTION_PARAMETERS = {"theta": "zipfian", "hot_fraction": "hotspot", "hot_ops": "hotspot"}


def _distribution(c: _Checker, value: Any) -> KeyDistribution:
    if isinstance(value, str):
        value = {"type": value}
    data = c.mapping(value, "key_distribution", ("type", "theta", "hot_fraction", "hot_ops"))
    path = "key_distribution"
    kind = c.string(data, "type", path, "uniform", choices=DISTRIBUTIONS)
    for key, owner in _DISTRIBUTION_PARAMETERS.items():
        if key in data and kind != owner:
            c.add(f"{path}.{key}", f"{key} only with type {owner} (it does nothing for {kind})",
                  data[key])
    return KeyDistribution(
        kind=kind,
        theta=c.number(data, "theta", path, 0.99, minimum=0.0, maximum=10.0,
                       exclusive_min=True) or 0.99,
        hot_fraction=c.number(data, "hot_fraction", path, 0.2, minimum=0.0, maximum=1.0,
                              exclusive_min=True) or 0.2,
        hot_ops=c.number(data, "hot_ops", path, 0.8, minimum=0.0, maximum=1.0) or 0.0,
    )


def backend_spec_for(name: str) -> BackendSpec | None:
    """The spec of a preset backend name, or None if there is no such preset."""
    preset = PRESETS.get(name)
    if preset is None:
        return None
    return BackendSpec(name=name, type=preset[0], options=dict(preset[1]))


def select_backends(workload: Workload, names: list[str]) -> tuple[BackendSpec, ...]:
    """The workload's backends restricted to ``names`` (presets may be named too)."""
    own = {spec.name: spec for spec in workload.backends}
    chosen: list[BackendSpec] = []
    issues = []
    for i, name in enumerate(names):
        spec = own.get(name) or backend_spec_for(name)
        if spec is None:
            issues.append(ConfigProblem(f"--backends[{i}]",
                                        "a backend of the workload or a preset name",
                                        repr(name) + did_you_mean(name, [*own, *PRESETS])))
        else:
            chosen.append(spec)
    if issues:
        raise WorkloadError(workload.source, issues)
    return tuple(chosen)


def _backends(c: _Checker, value: Any) -> tuple[BackendSpec, ...]:
    if not isinstance(value, list) or not value:
        c.add("backends", "a non-empty list of backend names or {name, type, options}", value)
        return ()
    specs: list[BackendSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        path = f"backends[{i}]"
        if item is None:
            item = "null"  # YAML reads an unquoted `null` as nothing; it can only mean this
        if isinstance(item, str):
            spec = backend_spec_for(item)
            if spec is None:
                c.add(path, f"a known backend ({', '.join(sorted(PRESETS))}) or "
                      "{name, type, options}", _describe(item) + did_you_mean(item, PRESETS),
                      raw=True)
                continue
        else:
            data = c.mapping(item, path, ("name", "type", "options"))
            if not isinstance(item, Mapping):
                continue
            name = c.string(data, "name", path, "")
            backend_type = c.string(data, "type", path, "", choices=tuple(sorted(TYPES)))
            if "name" not in data or "type" not in data:
                c.add(path, "both name and type", f"keys {sorted(data)}", raw=True)
                continue
            if not _NAME.match(name):
                c.add(f"{path}.name", "a name of letters, digits, '_', '.', '-' (max 64)", name)
                continue
            options = data.get("options") or {}
            if not isinstance(options, Mapping):
                c.add(f"{path}.options", "a mapping of backend options", options)
                continue
            if backend_type:
                for key, expected, found in option_issues(backend_type, options):
                    c.add(f"{path}.options" + (f".{key}" if key else ""), expected, found,
                          raw=True)
            spec = BackendSpec(name=name, type=backend_type, options=dict(options))
        if spec.name in seen:
            c.add(path, "a backend name not used before in the list", spec.name)
            continue
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def _network(c: _Checker, value: Any) -> Network:
    path = "network"
    data = c.mapping(value, path, NETWORK_KEYS)
    latency = c.number(data, "latency_ms", path, 0.0, minimum=0.0, maximum=60_000.0) or 0.0
    jitter = c.number(data, "jitter_ms", path, 0.0, minimum=0.0, maximum=60_000.0) or 0.0
    default_mode = NetworkMode.INPROCESS if latency or jitter else NetworkMode.NONE
    mode = NetworkMode(c.string(data, "mode", path, default_mode, choices=NETWORK_MODES))
    if mode == NetworkMode.NONE and (latency or jitter):
        c.add("network.mode", "inprocess, toxiproxy or auto when latency_ms/jitter_ms is set",
              mode)
    url = c.string(data, "toxiproxy_url", path, DEFAULT_URL)
    if not url.startswith(("http://", "https://")):
        c.add("network.toxiproxy_url", "an http:// or https:// URL", url)
    proxies_data = c.mapping(data.get("proxies"), "network.proxies", ROUTE_NAMES)
    proxies: dict[str, str] = {}
    for key, address in proxies_data.items():
        if key not in ROUTE_NAMES:
            continue
        if not isinstance(address, str) or not re.match(r"^[^:\s]*:\d{1,5}$", address):
            c.add(f"network.proxies.{key}", "a listen address host:port", address)
        else:
            proxies[key] = address
    raw_faults = data.get("faults") or []
    faults = _faults(c, raw_faults)
    if raw_faults and mode in (NetworkMode.NONE, NetworkMode.INPROCESS):
        c.add("network.faults", "mode toxiproxy or auto (faults need Toxiproxy)", mode)
    return Network(mode=mode, latency_ms=latency, jitter_ms=jitter, toxiproxy_url=url,
                   proxies=proxies, faults=faults)


def _faults(c: _Checker, value: Any) -> tuple[Fault, ...]:
    """The faults, checked by their own model's rules (proxies.faults)."""
    try:
        return parse_faults(value, "network.faults")
    except ProxyConfigError as exc:
        c.issues.extend(exc.problems)  # the same problem class as the workload's own
        return ()


def _thresholds(c: _Checker, value: Any,
                backends: set[str]) -> dict[str, tuple[Threshold, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add("thresholds", "a mapping of backend name (or '*') to a list of conditions", value)
        return {}
    result: dict[str, tuple[Threshold, ...]] = {}
    for key, conditions in value.items():
        path = f"thresholds.{key}"
        if key != ALL_BACKENDS and key not in backends:
            c.add(path, f"'*' or a backend of this workload ({', '.join(sorted(backends))})",
                  key)
            continue
        if isinstance(conditions, str):
            conditions = [conditions]
        if not isinstance(conditions, list):
            c.add(path, "a list of conditions like 'get.p99_ms < 5'", conditions)
            continue
        good: list[Threshold] = []
        for i, condition in enumerate(conditions):
            try:
                good.append(parse_threshold(condition))
            except ThresholdError as exc:
                c.add(f"{path}[{i}]", exc.expected, exc.found, raw=True)
        result[str(key)] = tuple(good)
    return result
