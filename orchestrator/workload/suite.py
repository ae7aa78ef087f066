"""A suite: a base workload and the axes to sweep it along, every point one run.

A suite file (``workloads/suite.yaml``) names a base workload and axes, each a list of values:

* ``latency_ms``: the network's round-trip latency (in-process emulation; 0 means none);
* ``read_share``: the share of the base workload's total ``target_rate`` that reads take;
* ``instances``: application instances in all, as worker processes x ``instances_per_process``
  (as many processes as the base workload has, or fewer, times instances per process);
* any other name: a workload setting's path (``keyspace``, ``network.jitter_ms``), set to
  each value as ``--set`` would.

``sweep: axes`` (the default) runs the base point and, for each axis, its other values with
every other axis at its base value; ``sweep: grid`` runs every combination. Every point runs
the suite's backends (plus ``axis_backends`` of the axes it lies on), ``repeat`` times
interleaved, as one run. :func:`load_suite` reads and validates a suite file, building and
validating each point's workload before anything runs; every problem is listed with its path,
as for a workload.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ThresholdError, UsageError, WorkloadError
from orchestrator.workload.loading import apply_overrides, read_workload_text
from orchestrator.workload.model import NetworkMode, Workload
from orchestrator.workload.thresholds import Threshold, parse_threshold
from orchestrator.workload.validation import DEFAULT_BACKENDS, did_you_mean, parse_workload
from proxies import ConfigProblem

SWEEPS = ("axes", "grid")
# The axes the suite itself knows how to set (any other axis name is a workload path).
LATENCY, READ_SHARE, INSTANCES = "latency_ms", "read_share", "instances"
_KEYS = ("name", "description", "workload", "backends", "axis_backends", "axes", "base",
         "sweep", "repeat", "target", "compare", "quick")
_QUICK_KEYS = tuple(k for k in _KEYS if k not in ("name", "quick"))
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_POINTS = 500
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Axis:
    """One axis of a sweep: its name, its values (ascending) and its base value."""

    name: str
    values: tuple[float, ...]
    base: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values), "base": self.base}


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a sweep: every axis's value there, and the run that measures it."""

    key: str  # "latency_ms=0.5 read_share=0.9 instances=2"
    values: Mapping[str, float]  # axis -> value, every axis
    on_axes: tuple[str, ...]  # the axes whose sweep it lies on (the others at their base)
    workload: Workload  # validated: base workload + --set overrides + this point's values
    fingerprint: str  # of the workload's data: a point whose workload changed runs again


@dataclass(frozen=True, slots=True)
class Suite:
    """A validated suite, its points built."""

    name: str
    description: str
    axes: tuple[Axis, ...]
    sweep: str
    target: tuple[Threshold, ...]
    target_text: str
    compare: tuple[tuple[str, str], ...]  # (pgcache backend, Valkey backend) pairs
    points: tuple[Point, ...]
    source: str
    text: str

    @property
    def backend_names(self) -> tuple[str, ...]:
        """Every backend some point runs, in order."""
        seen: dict[str, None] = {}
        for point in self.points:
            seen.update((b.name, None) for b in point.workload.backends)
        return tuple(seen)


def value_text(value: float) -> str:
    """An axis value as written in a point's name."""
    return f"{value:g}"


def parse_target(text: object, where: str = "target") -> tuple[Threshold, ...]:
    """A target: threshold conditions joined by ``and`` (``get.p99_ms < 2 and stale_rate <
    0.001``); WorkloadError-style issues as ThresholdError for the first bad one."""
    if not isinstance(text, str) or not text.strip():
        raise ThresholdError(text, "conditions joined by 'and', e.g. 'get.p99_ms < 2 and "
                             "stale_rate < 0.001'", repr(text))
    return tuple(parse_threshold(part) for part in _AND.split(text.strip()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return float(value)


class _Reader:
    """Reads a suite's data, collecting every issue with its path."""

    def __init__(self) -> None:
        self.issues: list[ConfigProblem] = []

    def add(self, path: str, expected: str, found: Any) -> None:
        text = found if isinstance(found, str) and found.startswith("(") else repr(found)
        if len(text) > 80:
            text = text[:77] + "..."
        self.issues.append(ConfigProblem(path, expected, text))

    def axes(self, data: Any, base: Any, process_count: int) -> list[Axis]:
        if not isinstance(data, Mapping) or not data:
            self.add("axes", "a mapping of axis names to lists of values, e.g. "
                     "{latency_ms: [0, 1.5], read_share: [0.5, 0.9]}", data)
            return []
        if not isinstance(base, Mapping):
            self.add("base", "a mapping of each axis to its base value (one of its values)",
                     base)
            base = {}
        axes = []
        for name, raw in data.items():
            path = f"axes.{name}"
            if not isinstance(name, str) or not _PATH.match(name):
                self.add(path, "an axis name: latency_ms, read_share, instances or a "
                         "workload setting's path", name)
                continue
            if not isinstance(raw, list) or not raw:
                self.add(path, "a non-empty list of numbers", raw)
                continue
            values: list[float] = []
            for i, item in enumerate(raw):
                number = _number(item)
                if number is None or not self._axis_value(name, number, process_count):
                    self.add(f"{path}[{i}]", _AXIS_EXPECTED.get(name, "a finite number"),
                             item)
                elif number in values:
                    self.add(f"{path}[{i}]", "each value once", item)
                else:
                    values.append(number)
            if not values:
                continue
            values.sort()
            chosen = _number(base.get(name))
            if chosen is None or chosen not in values:
                self.add(f"base.{name}", f"one of the values of axes.{name} "
                         f"({', '.join(value_text(v) for v in values)})",
                         base.get(name, "(missing)"))
                chosen = values[0]
            axes.append(Axis(name, tuple(values), chosen))
        for name in base:
            if name not in data:
                self.add(f"base.{name}", "an axis of this suite", name)
        return axes

    @staticmethod
    def _axis_value(name: str, value: float, process_count: int) -> bool:
        if name == LATENCY:
            return 0 <= value <= 60_000
        if name == READ_SHARE:
            return 0 < value < 1
        if name == INSTANCES:
            return value == int(value) and 1 <= value <= process_count * 256
        return True


_AXIS_EXPECTED = {
    LATENCY: "a round-trip latency in ms from 0 to 60,000",
    READ_SHARE: "a share of the operations strictly between 0 and 1",
    INSTANCES: "a whole number of instances >= 1 (at most 256 per worker process)",
}


def _point_overrides(axis: str, value: float, base: Workload) -> list[str]:
    """The ``--set`` overrides that put the base workload at ``axis = value``."""
    if axis == LATENCY:
        mode = base.network.mode
        if mode not in (NetworkMode.TOXIPROXY, NetworkMode.AUTO):
            mode = (NetworkMode.INPROCESS if value > 0 or base.network.jitter_ms > 0
                    else NetworkMode.NONE)
        return [f"network.latency_ms={value!r}", f"network.mode={mode}"]
    if axis == READ_SHARE:
        total = (base.target_rate.reads or 0.0) + (base.target_rate.writes or 0.0)
        reads, writes = round(total * value, 6), round(total * (1 - value), 6)
        return [f"target_rate={{reads: {reads!r}, writes: {writes!r}}}"]
    if axis == INSTANCES:
        n = int(value)
        processes = max(d for d in range(1, min(n, base.process_count) + 1) if n % d == 0)
        return [f"processes={processes}", f"instances_per_process={n // processes}"]
    return [f"{axis}={json.dumps(value if value != int(value) else int(value))}"]


def _merge(base: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, mappings recursively (a copy)."""
    result: dict[str, Any] = dict(copy.deepcopy(base)) if isinstance(base, Mapping) else {}
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _backend_name(item: Any) -> str | None:
    if item is None:
        return "null"
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping) and isinstance(item.get("name"), str):
        return str(item["name"])
    return None


# Keys only a suite file has: `validate` tells a suite from a workload by them.
_SUITE_ONLY = frozenset({"axes", "target", "sweep", "axis_backends", "compare", "workload"})


def is_suite_file(path: str | Path) -> bool:
    """Whether ``path`` holds a suite rather than a workload (False when it cannot be read:
    the workload loader then says why)."""
    try:
        _, data = read_workload_text(path)
    except WorkloadError:
        return False
    return isinstance(data, Mapping) and bool(_SUITE_ONLY & set(data))


def load_suite(path: str | Path, *, quick: bool = False,
               overrides: Sequence[str] = ()) -> Suite:
    """Read, validate and expand a suite file; ``quick``: with its ``quick:`` settings;
    ``overrides``: ``--set`` overrides of the base workload. WorkloadError lists every
    problem (exit 2) before anything runs."""
    source = str(path)
    text, data = read_workload_text(path)
    if not isinstance(data, Mapping):
        raise WorkloadError(source, [ConfigProblem("(document)", "a mapping of suite settings",
                                                   type(data).__name__)])
    return parse_suite(data, source=source, text=text, quick=quick, overrides=overrides,
                       directory=Path(path).parent, default_name=Path(path).stem)


def parse_suite(data: Mapping[str, Any], *, source: str = "<suite>", text: str = "",
                quick: bool = False, overrides: Sequence[str] = (),
                directory: Path = Path("."), default_name: str = "suite") -> Suite:
    """Validate suite data and build its points; WorkloadError with every issue."""
    r = _Reader()
    for key in data:
        if key not in _KEYS:
            r.add(str(key), f"one of the known keys ({', '.join(_KEYS)})",
                  "(an unknown key)" + did_you_mean(key, _KEYS))
    quick_data = data.get("quick") or {}
    if not isinstance(quick_data, Mapping):
        r.add("quick", "a mapping of suite settings for --quick", quick_data)
        quick_data = {}
    for key in quick_data:
        if key not in _QUICK_KEYS:
            r.add(f"quick.{key}", f"one of {', '.join(_QUICK_KEYS)}",
                  "(an unknown key)" + did_you_mean(key, _QUICK_KEYS))
    if quick and not quick_data:
        r.add("quick", "quick settings (--quick was asked for)", "(none in this suite)")
    settings = dict(data)
    if quick:
        for key, value in quick_data.items():
            if key == "workload" and isinstance(value, Mapping):
                continue  # merged into the base workload below
            settings[key] = value
    name = settings.get("name", default_name)
    if not isinstance(name, str) or not _ID.match(name):
        r.add("name", "a name of letters, digits, '_', '.', '-' (max 64)", name)
        name = default_name
    description = settings.get("description", "")
    if not isinstance(description, str):
        r.add("description", "a string", description)
        description = ""

    base_data, base_text = _base_workload(r, settings.get("workload"), directory)
    if quick and isinstance(quick_data.get("workload"), Mapping):
        base_data = _merge(base_data, quick_data["workload"])
    if "backends" in settings:
        base_data["backends"] = settings["backends"]
    if settings.get("repeat") is not None:
        base_data["repeat"] = settings["repeat"]
    try:
        base_data = apply_overrides(base_data, list(overrides))
    except UsageError as exc:
        raise WorkloadError(source, [ConfigProblem("--set", "path=value overrides", str(exc))]) \
            from None
    try:
        base = parse_workload(base_data, source=f"{source} (workload)",
                              default_name=f"{name}-base")
    except WorkloadError as exc:
        r.issues += [ConfigProblem(f"workload.{i.path}", i.expected, i.found) for i in exc.issues]
        raise WorkloadError(source, r.issues) from None

    axes = r.axes(settings.get("axes"), settings.get("base") or {}, base.process_count)
    names = {a.name for a in axes}
    sweep = settings.get("sweep", "axes")
    if sweep not in SWEEPS:
        r.add("sweep", "axes (one axis at a time around the base) or grid (every "
              "combination)", sweep)
        sweep = "axes"
    _check_axes(r, axes, base)
    axis_backends = settings.get("axis_backends") or {}
    if not isinstance(axis_backends, Mapping):
        r.add("axis_backends", "a mapping of axis name to a list of backends", axis_backends)
        axis_backends = {}
    for axis, extra in axis_backends.items():
        if axis not in names:
            r.add(f"axis_backends.{axis}", "an axis of this suite", axis)
        elif not isinstance(extra, list) or not extra:
            r.add(f"axis_backends.{axis}", "a non-empty list of backends", extra)

    target_text = settings.get("target")
    target: tuple[Threshold, ...] = ()
    try:
        target = parse_target(target_text)
    except ThresholdError as exc:
        # (exc.found is already quoted)
        r.issues.append(ConfigProblem("target", exc.expected,
                                      "(missing)" if target_text is None else exc.found))
    text_target = target_text if isinstance(target_text, str) else ""

    points = _points(r, axes, sweep, base, base_data, axis_backends, name, source)
    backends = {b.name: b for p in points for b in p.workload.backends}
    compare = _compare(r, settings.get("compare"), backends)
    if r.issues:
        raise WorkloadError(source, r.issues)
    return Suite(name=name, description=description, axes=tuple(axes), sweep=sweep,
                 target=target, target_text=text_target.strip(), compare=compare,
                 points=tuple(points), source=source,
                 text=text + ("" if base_text is None else
                              f"\n# workload file:\n{base_text}"))


def _base_workload(r: _Reader, value: Any, directory: Path) -> tuple[dict[str, Any],
                                                                       str | None]:
    """The base workload's data: inline, or a file next to the suite's."""
    if isinstance(value, str):
        try:
            text, data = read_workload_text(directory / value)
        except WorkloadError as exc:
            r.issues += [ConfigProblem(f"workload ({value}): {i.path}", i.expected, i.found)
                         for i in exc.issues]
            return {}, None
        if not isinstance(data, Mapping):
            r.add("workload", "a workload file holding a mapping", value)
            return {}, None
        return dict(data), text
    if value is None:
        return {}, None
    if not isinstance(value, Mapping):
        r.add("workload", "the base workload: a mapping of workload settings, or a "
              "workload file's path", value)
        return {}, None
    return dict(copy.deepcopy(value)), None


def _check_axes(r: _Reader, axes: Sequence[Axis], base: Workload) -> None:
    """What an axis needs of the base workload."""
    for axis in axes:
        if axis.name == READ_SHARE and not (base.target_rate.reads
                                            and base.target_rate.writes):
            r.add("axes.read_share", "a base workload with a target_rate for reads and for "
                  "writes (read_share splits their total; an open loop keeps the share exact)",
                  "(a closed loop)")
        elif axis.name == READ_SHARE and not (base.writers and base.readers):
            r.add("axes.read_share", "a base workload with writer and reader tasks (the "
                  "share of the rate given to a kind without tasks would never be offered)",
                  f"({base.writers} writers, {base.readers} readers)")
        if axis.name == INSTANCES:
            tasks = max(base.writers, base.readers)
            if axis.values[-1] > tasks:
                r.add("axes.instances", f"at most {tasks} instances (max of writers, readers): "
                      "an instance without tasks records nothing, so it would not count as "
                      "one", value_text(axis.values[-1]))


def _points(r: _Reader, axes: Sequence[Axis], sweep: str, base: Workload,
            base_data: Mapping[str, Any], axis_backends: Mapping[str, Any], name: str,
            source: str) -> list[Point]:
    if not axes:
        return []
    combos: list[dict[str, float]]
    if sweep == "grid":
        combos = [dict(zip([a.name for a in axes], values, strict=True))
                  for values in itertools.product(*(a.values for a in axes))]
    else:
        basic = {a.name: a.base for a in axes}
        combos = [basic] + [dict(basic, **{a.name: v}) for a in axes for v in a.values
                            if v != a.base]
    if len(combos) > MAX_POINTS:
        r.add("axes", f"at most {MAX_POINTS} points", f"({len(combos):,} points)")
        return []
    bases = {a.name: a.base for a in axes}
    points = []
    for values in combos:
        key = " ".join(f"{a}={value_text(v)}" for a, v in values.items())
        on_axes = tuple(a for a in values
                        if all(values[b] == bases[b] for b in values if b != a))
        overrides = [o for a, v in values.items() for o in _point_overrides(a, v, base)]
        data = apply_overrides(base_data, overrides)
        backends = list(data.get("backends") or DEFAULT_BACKENDS)
        names = {_backend_name(b) for b in backends}
        for axis in on_axes:
            extra = axis_backends.get(axis)
            for item in extra if isinstance(extra, list) else []:
                if _backend_name(item) not in names:
                    backends.append(item)
                    names.add(_backend_name(item))
        data["backends"] = backends
        data["name"] = f"{name}: {key}"
        text = (yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
                + f"# suite {name}, point {key}:\n"
                + "".join(f"#   --set {o}\n" for o in overrides))
        try:
            workload = parse_workload(data, source=f"{source} (point {key})", text=text)
        except WorkloadError as exc:
            r.issues += [ConfigProblem(f"point {key}: {i.path}", i.expected, i.found)
                         for i in exc.issues]
            continue
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode())
        points.append(Point(key, values, on_axes, workload, digest.hexdigest()[:16]))
    return points


def _compare(r: _Reader, value: Any, backends: Mapping[str, Any]) -> tuple[tuple[str, str],
                                                                        ...]:
    """The pairs the crossovers compare: as given, or every pgcache backend against every
    Valkey one."""
    if value is None:
        pg = [n for n, b in backends.items() if b.type == "pgcache"]
        vk = [n for n, b in backends.items() if b.type.startswith("valkey")]
        return tuple((p, v) for p in pg for v in vk)
    if not isinstance(value, list):
        r.add("compare", "a list of [backend, backend] pairs", value)
        return ()
    pairs = []
    for i, pair in enumerate(value):
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(b, str) for b in pair)):
            r.add(f"compare[{i}]", "a pair [backend, backend]", pair)
            continue
        for j, backend in enumerate(pair):
            if backend not in backends:
                r.add(f"compare[{i}][{j}]", f"a backend of the suite "
                      f"({', '.join(backends)})", backend)
        pairs.append((str(pair[0]), str(pair[1])))
    return tuple(pairs)


def suite_id_for(suite: Suite, given: str | None, *, quick: bool) -> str:
    """The id a suite's runs are tagged with: as given, else its name (``-quick`` added for
    the quick variant, whose points are not the full suite's)."""
    if given is not None:
        if not _ID.match(given):
            raise UsageError(f"--id {given!r}: expected letters, digits, '_', '.', '-' "
                             "(max 64)")
        return given
    return suite.name + ("-quick" if quick else "")
