"""The README's answer: a suite's answer exported to a committed file, and rendered from it.

:func:`export` reads a measured suite from a results database and returns the answer file's
content: exactly what ``report --suite ID --format json`` prints (the verdict of every point
and backend, each condition's measured value, limit and miss), with the suite's provenance
beside it (the commit, the machine, when, the command, the server versions) and each
backend's settings. :func:`render` turns that file into the Markdown block the README shows
between :data:`BEGIN` and :data:`END`; it reads nothing but the file, so the README's block is
a function of a committed result and tests/test_readme_answer.py checks that it still is.

    python -m orchestrator.reports.readme_answer export --results DB --suite ID \\
        --command "python -m orchestrator suite workloads/suite.yaml" -o docs/answer/suite.json
    python -m orchestrator.reports.readme_answer render docs/answer/suite.json README.md
    python -m orchestrator.reports.readme_answer render --check docs/answer/suite.json README.md

Format history (``version``):
  1 -- ``suite`` (``report --suite --format json``, whose conditions carry metric, op,
       comparison, limit and miss), ``provenance``, ``backends``, ``load``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError, UsageError
from orchestrator.reports.answer import format_answer
from orchestrator.results import store, suites
from orchestrator.results.findings import answer, axis_label, number
from orchestrator.workload.loading import recorded_workload
from orchestrator.workload.suite import parse_target

FORMAT = "pgcache-suite-answer"
VERSION = 1
BEGIN = "<!-- answer:begin -->"
END = "<!-- answer:end -->"
_OVERRIDES_HEAD = "\n# overrides (--set):\n"  # as orchestrator.workload.loading appends them

# The backend types the sentences speak of: pgcache's settings, and Valkey's fair peer (a
# local cache per instance, kept by CLIENT TRACKING, race-safe) and plain Valkey.
_PGCACHE = "pgcache"
_PEER = "valkey-tracking"


# -- export -----------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """This host: CPU model, CPUs, memory and kernel (None where the system does not say).
    The runs record their host's name only; the export reads the rest here."""
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    uname = platform.uname()
    return {"host": socket.gethostname(), "cpu_model": model or uname.processor or None,
            "cpus": os.cpu_count(), "memory_bytes": memory,
            "kernel": f"{uname.system} {uname.release}", "machine": uname.machine}


def export(conn: Any, suite_id: str, *, command: str) -> dict[str, Any]:
    """The answer file of suite ``suite_id``, judged by the suite's own target."""
    data = suites.read_suite(conn, suite_id)
    measured = [p for p in data.points if p.status in suites.MEASURED]
    if not measured:
        raise UsageError(f"suite {suite_id!r} has no measured point: run it first")
    result = answer(conn, data, parse_target(data.target, "target"), data.target)
    run_ids = sorted({p.run_id for p in measured})
    marks = ", ".join("?" * len(run_ids))
    runs = conn.execute(
        "SELECT run_id, started_at, finished_at, host, versions, git_commit, workload_yaml "
        f"FROM runs WHERE run_id IN ({marks}) ORDER BY started_at", run_ids).fetchall()
    loads = [r[0] for r in conn.execute(
        f"SELECT load_avg FROM suite_points WHERE suite_id = ? AND run_id IN ({marks})",
        [suite_id, *run_ids]).fetchall() if r[0] is not None]
    hosts = sorted({str(r[3]) for r in runs if r[3]})
    here = machine()
    backends: dict[str, dict[str, Any]] = {}
    overrides: set[str] = set()
    for row in runs:
        text = str(row[6] or "")
        overrides.update(line.removeprefix("#   ") for line in
                         text.partition(_OVERRIDES_HEAD)[2].splitlines() if line.strip())
        workload = recorded_workload(text, data.name)
        for spec in workload.backends if workload is not None else ():
            backends.setdefault(spec.name, {"type": spec.type, "options": dict(spec.options)})
    base = next((p for p in measured if all(p.values[a.name] == a.base for a in data.axes)),
                measured[0])
    base_run = next(r for r in runs if r[0] == base.run_id)
    base_workload = recorded_workload(str(base_run[6] or ""), data.name)
    versions = json.loads(base_run[4]) if base_run[4] else {}
    started, finished = min(r[1] for r in runs), max(r[2] or r[1] for r in runs)
    return {
        "format": FORMAT,
        "version": VERSION,
        "suite": json.loads(format_answer(data, result, "json")),
        "provenance": {
            "commits": sorted({str(r[5]) for r in runs if r[5]}),
            "command": command,
            "overrides": sorted(overrides),
            "started_at": started.isoformat(timespec="seconds") + "Z",
            "finished_at": finished.isoformat(timespec="seconds") + "Z",
            "measured_s": round(sum(((r[2] or r[1]) - r[1]).total_seconds() for r in runs)),
            "hosts": hosts,
            # What the runs record of their host is its name; the rest is read here, and only
            # when this is that host (else it is unknown, never guessed).
            "machine": here if hosts == [here["host"]] else None,
            "load_avg_max": max(loads) if loads else None,
            "versions": {k: versions.get(k) for k in ("python", "postgresql", "valkey")},
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "backends": backends,
        "load": None if base_workload is None else {
            "target_rate": {"reads": base_workload.target_rate.reads,
                            "writes": base_workload.target_rate.writes},
            "warmup_s": base_workload.warmup_s, "duration_s": base_workload.duration_s,
            "repeat": base_workload.repeat, "keyspace": base_workload.keyspace,
            "processes": base_workload.processes},
    }


_Fields = tuple[tuple[str, tuple[type, ...]], ...]
_NONE = type(None)
_TOP: _Fields = (("suite", (dict,)), ("provenance", (dict,)), ("backends", (dict,)))
_SUITE: _Fields = (("suite_id", (str,)), ("target", (str,)), ("axes", (list,)),
                   ("points", (list,)), ("verdicts", (list,)), ("metrics", (list,)))
_PROVENANCE: _Fields = (("commits", (list,)), ("command", (str,)), ("started_at", (str,)),
                        ("finished_at", (str,)), ("measured_s", (int,)),
                        ("machine", (dict, _NONE)))
_VERDICT: _Fields = (("point", (str,)), ("backend", (str,)), ("meets", (bool,)),
                     ("passes_met", (int,)), ("passes", (int,)), ("conditions", (list,)))
_CONDITION: _Fields = (("metric", (str,)), ("comparison", (str,)), ("limit", (int, float)),
                       ("measured", (int, float, _NONE)), ("passed", (bool, _NONE)))


def _fields(where: Mapping[str, Any], path: str, fields: _Fields) -> list[str]:
    """``path.KEY: expected ..., found ...`` for each field of ``where`` missing or of
    another type (a bool is no int here)."""
    problems = []
    for key, kinds in fields:
        value = where.get(key)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            problems.append(f"{path}{key}: expected {' or '.join(k.__name__ for k in kinds)}, "
                            f"found {type(value).__name__}")
    return problems


def check_schema(doc: Mapping[str, Any]) -> list[str]:
    """What the answer file lacks or has wrong (empty: it can be rendered)."""
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return [f"format/version: expected {FORMAT!r} version {VERSION}, found "
                f"{doc.get('format')!r} version {doc.get('version')!r}"]
    problems = _fields(doc, "", _TOP)
    if problems:
        return problems
    problems += _fields(doc["suite"], "suite.", _SUITE)
    problems += _fields(doc["provenance"], "provenance.", _PROVENANCE)
    verdicts = doc["suite"].get("verdicts")
    for i, verdict in enumerate(verdicts if isinstance(verdicts, list) else []):
        problems += _fields(verdict, f"suite.verdicts[{i}].", _VERDICT)
        conditions = verdict.get("conditions")
        for j, cond in enumerate(conditions if isinstance(conditions, list) else []):
            problems += _fields(cond, f"suite.verdicts[{i}].conditions[{j}].", _CONDITION)
    return problems


# -- render -----------------------------------------------------------------------------------

def _label(point: Mapping[str, Any], axes: Sequence[Mapping[str, Any]]) -> str:
    """A point by what differs from the base (``5 ms``); the base by all its values."""
    values = point["values"]
    moved = [a for a in axes if values[a["name"]] != a["base"]]
    if not moved:
        return ", ".join(axis_label(a["name"], values[a["name"]]) for a in axes) + " (base)"
    return ", ".join(axis_label(a["name"], values[a["name"]]) for a in moved)


def _ordered(suite: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The points by axis, each axis's values in order; the base point once, first."""
    axes = suite["axes"]
    points = [p for p in suite["points"]
              if any(v["point"] == p["point"] for v in suite["verdicts"])]

    def key(p: Mapping[str, Any]) -> tuple[int, float]:
        for i, a in enumerate(axes):
            if p["values"][a["name"]] != a["base"]:
                return i + 1, float(p["values"][a["name"]])
        return 0, 0.0
    return sorted(points, key=key)


def _metric(cond: Mapping[str, Any]) -> str:
    column = str(cond["metric"]).removesuffix("_ms").replace("_", " ")
    return f"{cond['op']} {column}" if cond.get("op") else column


def _over(cond: Mapping[str, Any]) -> float:
    """How far a missed condition is over its limit, as a ratio (1: at it)."""
    if cond["comparison"] in ("<", "<=") and cond["limit"] > 0:
        return float(cond["measured"]) / float(cond["limit"])
    if cond["comparison"] in (">", ">=") and cond["measured"]:
        return float(cond["limit"]) / float(cond["measured"])
    return math.inf


def _miss(cond: Mapping[str, Any], inline: bool = False) -> str:
    """``get p99 10.5 ms (5.3x)``: the measured value and how far over the limit (inline,
    in a sentence's parentheses: ``get p99 10.5 ms, 5.3x the limit``)."""
    ratio = _over(cond)
    text = f"{_metric(cond)} {number(cond['measured'], cond['metric'])}"
    if not math.isfinite(ratio):
        return text
    if inline:
        return text + (f", {ratio:.1f}x the limit" if ratio >= 2
                       else f", {(ratio - 1) * 100:.0f}% over")
    return text + (f" ({ratio:.1f}x)" if ratio >= 2 else f" (+{(ratio - 1) * 100:.0f}%)")


def _missed(verdict: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in verdict["conditions"] if c["passed"] is False]


def _cell(verdict: Mapping[str, Any] | None) -> str:
    if verdict is None:
        return "-"
    if verdict["meets"]:
        return f"meets ({verdict['passes_met']}/{verdict['passes']} passes)"
    return "misses: " + ", ".join(_miss(c) for c in _missed(verdict))


def _target_words(suite: Mapping[str, Any]) -> str:
    conds: list[Mapping[str, Any]] = next(
        (v["conditions"] for v in suite["verdicts"] if v["conditions"]), [])
    return ", ".join(f"{_metric(c)} {c['comparison']} {number(c['limit'], c['metric'])}"
                     for c in conds) or suite["target"]


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _settings(backend: str, backends: Mapping[str, Any]) -> str:
    options = (backends.get(backend) or {}).get("options") or {}
    return ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in options.items()) or "defaults"


class _Facts:
    """The verdicts of a suite, looked up by point and backend, with the points' labels."""

    def __init__(self, suite: Mapping[str, Any], backends: Mapping[str, Any],
                 labels: Mapping[str, str], order: Sequence[str]) -> None:
        self.by = {(v["point"], v["backend"]): v for v in suite["verdicts"]}
        self.labels, self.order = labels, order
        names = list(dict.fromkeys(v["backend"] for v in suite["verdicts"]))
        kind = {b: (backends.get(b) or {}).get("type") for b in names}
        self.names = names
        self.pg = [b for b in names if kind[b] == _PGCACHE]
        self.peers = [b for b in names if kind[b] == _PEER]

    def verdicts(self, backend: str) -> list[Mapping[str, Any]]:
        return [self.by[(p, backend)] for p in self.order if (p, backend) in self.by]

    def met(self, backend: str) -> list[str]:
        return [v["point"] for v in self.verdicts(backend) if v["meets"]]

    def any_met(self, point: str, backends: Sequence[str]) -> bool:
        return any(self.by.get((point, b), {}).get("meets") for b in backends)

    def where(self, points: Sequence[str]) -> str:
        return _join(["the base point" if self.labels[p].endswith(" (base)")
                      else self.labels[p] for p in points])


def _pgcache_sentence(f: _Facts, backend: str, backends: Mapping[str, Any]) -> str:
    """Where pgcache with these settings meets the target; where it misses, by least and
    most (by its worst condition at each point)."""
    verdicts = f.verdicts(backend)
    met, missed = f.met(backend), [v for v in verdicts if not v["meets"]]
    head = f"{backend} (pgcache, {_settings(backend, backends)})"
    if not missed:
        return f"{head} meets the target at every point it ran ({len(verdicts)})."
    worst = {v["point"]: max(_missed(v), key=_over) for v in missed}
    least = min(missed, key=lambda v: _over(worst[v["point"]]))
    most = max(missed, key=lambda v: _over(worst[v["point"]]))
    text = (f"{head} meets the target at {len(met)} of {len(verdicts)} points: {f.where(met)}"
            if met else f"{head} meets the target at none of the {len(verdicts)} points")
    text += (f"; it misses by least at {f.where([least['point']])} "
             f"({'; '.join(_miss(c, inline=True) for c in _missed(least))})")
    if most is not least:
        text += (f" and by most at {f.where([most['point']])} "
                 f"({_miss(worst[most['point']], inline=True)})")
    return text + "."


def _consistency_sentence(f: _Facts, backend: str) -> str | None:
    """The points where ``backend`` misses a condition of consistency (a stale rate): a
    cache that serves stale values there is not the answer, whatever its latency."""
    fails: dict[str, list[dict[str, Any]]] = {}
    for v in f.verdicts(backend):
        for c in _missed(v):
            if c.get("op") is None:
                fails.setdefault(_metric(c), []).append({**c, "point": v["point"]})
    if not fails:
        return None
    parts = []
    for metric, conds in fails.items():
        top = max(conds, key=_over)
        parts.append(f"its {metric} misses {conds[0]['comparison']} "
                     f"{number(conds[0]['limit'], conds[0]['metric'])} at {len(conds)} "
                     f"point{'s' if len(conds) > 1 else ''} "
                     f"({f.where([c['point'] for c in conds])}; up to "
                     f"{number(top['measured'], top['metric'])})")
    return f"Consistency, not only speed: {backend} serves stale reads, " + "; ".join(parts) + "."


def _sentences(suite: Mapping[str, Any], backends: Mapping[str, Any],
               labels: Mapping[str, str], order: Sequence[str]) -> list[str]:
    f = _Facts(suite, backends, labels, order)
    out = []
    main = f.pg[0] if f.pg else None
    if main is not None:
        out.append(_pgcache_sentence(f, main, backends))
    others = f.pg[1:]
    never = [b for b in others if not f.met(b)]
    if never:
        named = [f"{_settings(b, backends)} ({b})" for b in never]
        out.append("With " + (f"{named[0]}" if len(named) == 1 else
                              (f"{named[0]} or {named[1]}" if len(named) == 2
                               else ", ".join(named[:-1]) + " or " + named[-1]))
                   + " pgcache meets it at no point either.")
    for b in others:
        if f.met(b):
            out.append(f"With {_settings(b, backends)} ({b}) pgcache meets it at "
                       f"{len(f.met(b))} of {len(f.verdicts(b))} points: "
                       f"{f.where(f.met(b))}.")
    pg_points = {p for p in order if f.any_met(p, f.pg)}
    for peer in f.peers:
        needed = [p for p in f.met(peer) if p not in pg_points]
        if needed:
            out.append(f"Valkey is needed where its fair peer {peer} (a local cache per "
                       f"instance kept by CLIENT TRACKING) meets the target and no pgcache "
                       f"setting does: at {f.where(needed)}.")
        else:
            out.append(f"Valkey's fair peer {peer} meets the target at "
                       f"{len(f.met(peer))} of {len(f.verdicts(peer))} points, and wherever "
                       f"it does a pgcache setting does too: Valkey is not needed there.")
    nobody = [p for p in order if not f.any_met(p, f.names)]
    if nobody:
        out.append(f"At the other {len(nobody)} point{'s' if len(nobody) > 1 else ''} "
                   f"no backend meets it, plain Valkey included."
                   if len(nobody) < len(order) else "No backend meets it at any point.")
    if main is not None:
        stale = _consistency_sentence(f, main)
        if stale:
            out.append(stale)
    return out


def _provenance(doc: Mapping[str, Any]) -> str:
    prov = doc["provenance"]
    commits = ", ".join(c[:7] + (" (uncommitted changes)" if c.endswith("+dirty") else "")
                        for c in prov["commits"]) or "unknown"
    m = prov.get("machine")
    if m:
        memory = (f", {m['memory_bytes'] / 2**30:.1f} GiB" if m.get("memory_bytes") else "")
        where = f"{m.get('cpu_model') or 'unknown CPU'} ({m.get('cpus')} cores{memory}, " \
                f"{m.get('kernel')})"
    else:
        where = "host " + (", ".join(prov.get("hosts") or []) or "unknown")
    load = prov.get("load_avg_max")
    minutes, seconds = divmod(int(prov["measured_s"]), 60)
    versions = prov.get("versions") or {}
    servers = ", ".join(f"{name} {versions[key]}" for key, name in
                        (("postgresql", "PostgreSQL"), ("valkey", "Valkey"))
                        if versions.get(key))
    return (f"Measured {prov['started_at'][:10]} at commit {commits} on {where}"
            + (f", {servers}" if servers else "")
            + f": `{prov['command']}`, {minutes} min {seconds} s"
            + (f" (1-minute load average at most {load:.2f})" if load is not None else "")
            + (f", with `--set {' --set '.join(prov['overrides'])}`"
               if prov.get("overrides") else "") + ".")


def render(doc: Mapping[str, Any], source: str = "docs/answer/suite.json") -> str:
    """The README's answer block (markers included) from the answer file's content."""
    problems = check_schema(doc)
    if problems:
        raise UsageError(f"{source} is not an answer file this version renders: "
                         + "; ".join(problems))
    suite, backends = doc["suite"], doc["backends"]
    order_points = _ordered(suite)
    order = [p["point"] for p in order_points]
    labels = {p["point"]: _label(p, suite["axes"]) for p in order_points}
    by = {(v["point"], v["backend"]): v for v in suite["verdicts"]}
    # The columns: the backends every point ran (one axis's extra backends are in the text).
    names = list(dict.fromkeys(v["backend"] for v in suite["verdicts"]))
    columns = [b for b in names if all((p, b) in by for p in order)]
    load = doc.get("load") or {}
    rate = load.get("target_rate") or {}
    offered = (rate.get("reads") or 0) + (rate.get("writes") or 0)
    head = (f"**Target:** {_target_words(suite)} (`{suite['target']}`)"
            + (f", each point an open loop of {offered:,.0f} operations/s, "
               f"{load.get('repeat')} interleaved passes per backend" if offered else "")
            + ". Each row below the base point changes what it names from the base; a "
              "miss gives the measured value and how far over the limit it is.")
    lines = [BEGIN, f"<!-- generated from {source} by `make answer-render`: edit that, "
                    "not this -->", "", head, "",
             "| point | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for point in order:
        lines.append(f"| {labels[point]} | "
                     + " | ".join(_cell(by.get((point, b))) for b in columns) + " |")
    lines += ["", " ".join(_sentences(suite, backends, labels, order)), "",
              f"<sub>{_provenance(doc)} The data: [{source}]({source}).</sub>", END]
    return "\n".join(lines) + "\n"


def splice(readme: str, block: str) -> str:
    """``readme`` with its answer block replaced by ``block``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise UsageError(f"the README has no answer block ({BEGIN} ... {END})")
    return readme[:start] + block + readme[end + len(END) + 1:]


def current_block(readme: str) -> str:
    """The answer block the README holds now (markers included), or ''."""
    start, end = readme.find(BEGIN), readme.find(END)
    return "" if start < 0 or end < start else readme[start:end + len(END)] + "\n"


# -- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.reports.readme_answer",
        description="Export a measured suite's answer to a file; render that file into the "
                    "README's answer block.")
    commands = parser.add_subparsers(dest="command", required=True)
    exp = commands.add_parser("export", help="a measured suite -> the answer file")
    exp.add_argument("--results", type=Path, required=True, metavar="PATH")
    exp.add_argument("--suite", default="latest", metavar="ID")
    exp.add_argument("--command", dest="run_command", required=True,
                     help="the command that measured the suite, as the README shows it")
    exp.add_argument("-o", "--output", type=Path, required=True)
    ren = commands.add_parser("render", help="the answer file -> the README's block")
    ren.add_argument("answer", type=Path)
    ren.add_argument("readme", type=Path)
    ren.add_argument("--check", action="store_true",
                     help="change nothing; exit 1 if the README's block differs")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            conn = store.connect(args.results, read_only=True, external_access=False)
            try:
                doc = export(conn, suites.resolve_suite_id(conn, args.suite),
                             command=args.run_command)
            finally:
                conn.close()
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(doc, indent=1, default=str) + "\n")
            print(f"wrote {args.output} (suite {doc['suite']['suite_id']}, "
                  f"{len(doc['suite']['verdicts'])} verdicts)")
            return 0
        doc = json.loads(args.answer.read_text())
        # The block links the file as the README's page sees it.
        block = render(doc, source=Path(os.path.relpath(args.answer, args.readme.parent))
                       .as_posix())
        readme = args.readme.read_text()
        if args.check:
            if current_block(readme) != block:
                print(f"{args.readme}'s answer differs from what {args.answer} renders to: "
                      "run `make answer-render`", file=sys.stderr)
                return 1
            return 0
        args.readme.write_text(splice(readme, block))
        print(f"rendered {args.answer} into {args.readme}")
        return 0
    except OrchestratorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
