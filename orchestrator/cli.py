"""The command line: ``python -m orchestrator run|suite|validate|report|query|ingest|services``.

Exit codes (:class:`~orchestrator.errors.ExitCode`): 0 success, 1 a failed run (or errors
beyond the workload's allowance, or a query past its --timeout), 2 bad input (workload,
arguments, a workload this machine cannot hold), 99 a run that worked and whose thresholds (a
suite: its target) failed, 130 an interrupted command (SIGINT or SIGTERM). Every error the
orchestrator raises is an :class:`~orchestrator.errors.OrchestratorError` that carries its exit
code; :func:`main` prints its message, one ``error:`` line, and ends with that code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from orchestrator import services
from orchestrator.errors import ExitCode, OrchestratorError, ThresholdError, UsageError
from orchestrator.redaction import learn_environment, redact
from orchestrator.reports import meaning
from orchestrator.reports.answer import format_answer
from orchestrator.reports.html import render_html
from orchestrator.reports.output import check_target, write_report
from orchestrator.reports.suite_html import render_suite_html
from orchestrator.reports.table import FORMATS, QUERY_FORMATS, format_rows, format_summary
from orchestrator.results import interrupts, store, suites
from orchestrator.results.findings import answer
from orchestrator.results.logdir import ingest_log_dir
from orchestrator.run.runner import RunOptions, run_workload
from orchestrator.run.sweep import SuiteOptions, estimate_s, run_suite
from orchestrator.trace import cli as trace_cli
from orchestrator.workload.capacity import check_capacity
from orchestrator.workload.loading import load_workload, recorded_workload
from orchestrator.workload.model import EXECUTORS, BackendSpec, ExecutorKind, Workload
from orchestrator.workload.suite import (
    Suite,
    is_suite_file,
    load_suite,
    parse_target,
    suite_id_for,
)
from orchestrator.workload.validation import select_backends

# The seed harness's flags, kept as shortcuts for --set.
_SEED_FLAGS = (
    ("--writers", "writers", int, "writer tasks (in total, over all processes)"),
    ("--readers", "readers", int, "reader tasks (in total, over all processes)"),
    ("--write-iterations", "write_iterations", int, "writes per writer task"),
    ("--read-iterations", "read_iterations", int, "reads per reader task"),
    ("--keyspace", "keyspace", int, "number of distinct keys"),
    ("--ttl", "ttl_s", float, "TTL of each written value, seconds"),
    ("--network-latency-ms", "network.latency_ms", float,
     "added round-trip latency (in-process emulation unless the workload says otherwise)"),
    ("--network-jitter-ms", "network.jitter_ms", float, "round-trip jitter (+/- ms)"),
    ("--processes", "processes", str, "worker processes ('auto' = one per CPU)"),
    ("--duration", "duration_s", float, "run each pass for this many seconds"),
    ("--seed", "seed", int, "random seed"),
    ("--repeat", "repeat", int, "run each backend this many times, interleaved"),
)


def _add_executor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=EXECUTORS, metavar="{local,ray}",
                        help="where the workers run: local processes (default) or Ray actors "
                             "(= --set executor=...)")
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help="the Ray cluster: auto, ray://HEAD:10001 or HEAD:6379; implies "
                             "--executor ray (= --set ray_address=...)")


def _add_workload_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", help="a workload YAML file, e.g. workloads/default.yaml")
    parser.add_argument("--backends", nargs="+", metavar="NAME",
                        help="run only these backends (of the workload, or preset names)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="PATH=VALUE",
                        help="override a workload value, e.g. --set network.latency_ms=1.5 "
                             "(repeatable; VALUE is YAML)")
    for flag, path, kind, text in _SEED_FLAGS:
        parser.add_argument(flag, dest=f"seed_{path}", type=kind, metavar="N",
                            help=f"{text} (= --set {path}=N)")
    _add_executor_args(parser)
    _force_arg(parser)


def _force_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="run even more worker processes or memory than this machine "
                             "is judged to hold (see docs/workloads.md, What this machine "
                             "can hold)")


def _results_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=store.DEFAULT_RESULTS,
                        metavar="PATH",
                        help=f"the DuckDB results database (default {store.DEFAULT_RESULTS})")


def _quiet_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress lines: only failures, cautions and the summary")


def _version() -> str:
    try:
        return importlib.metadata.version("pgcache")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree not installed
        return "unknown"


# A query of the results that has not finished after five minutes has most likely gone wrong
# (a cross join of ops with itself); --timeout 0 lets one run as long as it takes.
DEFAULT_QUERY_TIMEOUT_S = 300.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, found {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator",
        description="Benchmark Postgres-as-a-cache (pgcache) against Valkey; every operation "
                    "recorded in DuckDB.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s (pgcache {_version()})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a workload and record it",
                              description="Run every backend of a workload in turn, show "
                                          "progress, ingest into DuckDB, print the summary.")
    _add_workload_args(run)
    _quiet_arg(run)
    _results_arg(run)

    validate = commands.add_parser("validate", help="check a workload or suite file",
                                   description="Validate a workload, or a suite (a file with "
                                               "axes and a target); list every problem.")
    _add_workload_args(validate)

    suite = commands.add_parser(
        "suite", help="run a suite: a workload swept along axes, then its answer",
        description="Run every point of a suite (a base workload swept along network "
                    "latency, read share, instances, ...) as one run each, in one results "
                    "database, tagged with the suite's id; points measured before are "
                    "skipped, so running it again resumes or extends it. Prints the "
                    "verdicts against the suite's target and where the answer changes.")
    suite.add_argument("suite", help="a suite YAML file, e.g. workloads/suite.yaml")
    suite.add_argument("--quick", action="store_true",
                       help="the suite's quick variant (its `quick:` settings), under its own "
                            "id (NAME-quick)")
    suite.add_argument("--id", dest="suite_id", metavar="ID",
                       help="the suite id its runs are tagged with (default: the suite's name)")
    suite.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="PATH=VALUE",
                       help="override a setting of the base workload, e.g. --set "
                            "duration_s=1 (repeatable; VALUE is YAML)")
    suite.add_argument("--list", action="store_true",
                       help="list the points and which are measured already; run nothing")
    _quiet_arg(suite)
    _force_arg(suite)
    _results_arg(suite)

    report = commands.add_parser("report", help="show the summary of a run, or a suite's",
                                 description="Print the summary of a run (default: latest), "
                                             "or with --suite the answer of a suite.")
    report.add_argument("run_id", nargs="?", default="latest", metavar="RUN_ID",
                        help="a run id, or 'latest' (default)")
    report.add_argument("--suite", metavar="ID",
                        help="report the suite ID ('latest': the last one recorded): its "
                             "verdicts, crossovers and, with --html, its charts")
    report.add_argument("--target", metavar="CONDITIONS",
                        help="with --suite: judge by these conditions instead of the suite's "
                             "target, e.g. 'get.p99_ms < 1 and stale_rate == 0'")
    report.add_argument("--format", choices=FORMATS, default="table")
    report.add_argument("--html", action="store_true",
                        help="write a self-contained HTML report instead")
    report.add_argument("--output", "-o", type=Path, metavar="PATH",
                        help="where --html writes (default results/report-RUN_ID.html, or "
                             "results/suite-ID.html): a new file or a report this tool "
                             "wrote, never a database")
    report.add_argument("--force", action="store_true",
                        help="with --html: replace an existing file even if this tool did "
                             "not write it (never a database or a directory)")
    _results_arg(report)

    query = commands.add_parser("query", help="run SQL on the results",
                                description="Run SQL against the results database "
                                            "(tables runs, ops, events; view summary).")
    query.add_argument("sql", help='e.g. "SELECT * FROM summary"')
    query.add_argument("--format", choices=QUERY_FORMATS, default="table")
    query.add_argument("--timeout", type=_seconds, default=DEFAULT_QUERY_TIMEOUT_S,
                       metavar="SECONDS",
                       help=f"stop the query after this long, exit 1 (default "
                            f"{DEFAULT_QUERY_TIMEOUT_S:g}; 0: no limit)")
    _results_arg(query)

    ingest = commands.add_parser(
        "ingest", help="load a run's log directory into the results",
        description="Load a run's log directory (results/logs/RUN_ID) into the results "
                    "database: what a run measured but could not ingest itself (a full disk, "
                    "a killed parent). Loading again replaces the earlier load.")
    ingest.add_argument("log_dir", type=Path, metavar="LOG_DIR",
                        help="a run's log directory, e.g. results/logs/20250101-120000-abcdef")
    _results_arg(ingest)

    services = commands.add_parser(
        "services", help="keep embedded servers running between runs",
        description="Start, stop or show embedded PostgreSQL and Valkey kept running between "
                    "runs (state in .services/, or $PGCACHE_SERVICES_DIR). Runs use them when "
                    "POSTGRES_DSN / VALKEY_URL are not set. `status` also lists strays: "
                    "embedded servers of a run that is gone (in $TMPDIR); `cleanup` stops them "
                    "and deletes their data.")
    services.add_argument("action", choices=("up", "down", "status", "cleanup"))
    services.add_argument("--purge", action="store_true",
                          help="with down: also delete the servers' data (never the results)")
    trace_cli.add_parser(commands)
    return parser


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    for _, path, _, _ in _SEED_FLAGS:
        value = getattr(args, f"seed_{path}")
        if value is not None:
            overrides.append(f"{path}={value}")
    if args.executor or args.ray_address:
        overrides.append(f"executor={args.executor or ExecutorKind.RAY}")
    if args.ray_address:
        overrides.append(f"ray_address={json.dumps(args.ray_address)}")
    return overrides + list(args.overrides)


def _load(args: argparse.Namespace) -> tuple[Workload, tuple[BackendSpec, ...]]:
    """The workload and the backends to run: resolved here, once (an unknown --backends name
    is reported before anything runs), and passed on."""
    workload = load_workload(args.workload, _overrides(args))
    backends = select_backends(workload, args.backends) if args.backends else workload.backends
    if not args.force:
        check_capacity([("", workload)], args.workload)
    return workload, backends


def _cmd_run(args: argparse.Namespace) -> int:
    workload, backends = _load(args)
    outcome = run_workload(workload, RunOptions(results_path=args.results, backends=backends,
                                                quiet=args.quiet))
    return outcome.exit_code


def _cmd_validate(args: argparse.Namespace) -> int:
    if is_suite_file(args.workload):
        if args.backends:
            raise UsageError("--backends selects a workload's backends; a suite names its own")
        suite = load_suite(args.workload, overrides=_overrides(args))
        quick = load_suite(args.workload, quick=True, overrides=_overrides(args))
        if not args.force:
            check_capacity([(f"point {p.key}: ", p.workload) for p in suite.points],
                           args.workload)
        print(f"{args.workload}: OK — a suite {suite.name!r}: {len(suite.points)} points "
              f"({len(quick.points)} with --quick) along "
              f"{', '.join(a.name for a in suite.axes)}, target {suite.target_text!r}; run it "
              f"with: python -m orchestrator suite {args.workload}")
        return 0
    w, backends = _load(args)
    mode = f"duration {w.duration_s:g} s" if w.duration_s else (
        f"{w.write_iterations} writes/writer, {w.read_iterations} reads/reader")
    print(f"{args.workload}: OK — workload {w.name!r}: {w.writers} writers, {w.readers} "
          f"readers, {mode}, keyspace {w.keyspace} ({w.key_distribution.kind}), "
          f"{w.process_count} processes"
          + (f" on Ray at {w.ray_address} ({w.placement.strategy})"
             if w.executor == ExecutorKind.RAY else "")
          + f", network {w.network.mode}, backends "
          f"{', '.join(b.name for b in backends)}, repeat {w.repeat}")
    return 0


def _write(args: argparse.Namespace, output: Path, text: str) -> None:
    write_report(output, text, force=args.force, databases=(args.results,))
    print(f"wrote {output}")


def _cmd_suite(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite, quick=args.quick, overrides=args.overrides)
    suite_id = suite_id_for(suite, args.suite_id, quick=args.quick)
    if args.list:
        return _list_suite(suite, suite_id, args.results)
    if not args.force:
        check_capacity([(f"point {p.key}: ", p.workload) for p in suite.points], args.suite)
    outcome = run_suite(suite, SuiteOptions(suite_id=suite_id, results_path=args.results,
                                            quiet=args.quiet))
    return outcome.exit_code


def _list_suite(suite: Suite, suite_id: str, results: Path) -> int:
    measured: dict[str, set[str]] = {}
    if results.exists():
        conn = store.connect(results, read_only=True, external_access=False)
        try:
            if "suite_runs" in {r[0] for r in conn.execute(
                    "SELECT table_name FROM duckdb_tables()").fetchall()}:
                measured = suites.measured_points(conn, suite_id)
        finally:
            conn.close()
    rows = [[p.key, ", ".join(p.on_axes), ", ".join(b.name for b in p.workload.backends),
             p.workload.repeat,
             "measured" if p.fingerprint in measured.get(p.key, set()) else "to run"]
            for p in suite.points]
    print(format_rows(["point", "on axes", "backends", "repeat", "state"], rows))
    todo = [p for p in suite.points if p.fingerprint not in measured.get(p.key, set())]
    estimate = estimate_s(todo)
    print(f"suite {suite_id}: {len(suite.points)} points, {len(todo)} to run"
          + (f", about {estimate / 60:.1f} min" if estimate is not None else ""))
    return 0


def _report_suite(args: argparse.Namespace, conn: Any) -> int:
    suite_id = suites.resolve_suite_id(conn, args.suite)
    data = suites.read_suite(conn, suite_id)
    text = args.target if args.target is not None else data.target
    try:
        target = parse_target(text, "--target")
    except ThresholdError as exc:
        raise UsageError(f"--target {text!r}: expected {exc.expected}, found {exc.found}") \
            from None
    result = answer(conn, data, target, text)
    if args.html:
        output = args.output or args.results.parent / f"suite-{suite_id}.html"
        _write(args, output, render_suite_html(conn, data, result))
        return 0
    print(format_answer(data, result, args.format))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    if args.output is not None:  # refused before the database is opened
        if not args.html:
            raise UsageError("-o writes the HTML report: give --html too (the other formats "
                             "print to the console)")
        check_target(args.output, force=args.force, databases=(args.results,))
    # The HTML report installs its analysis views, so it needs a writable database.
    conn = interrupts.watched(store.connect(args.results, read_only=not args.html,
                                            external_access=False))
    try:
        if args.suite is not None:
            return _report_suite(args, conn)
        if args.target is not None:
            raise UsageError("--target judges a suite: give --suite ID too")
        run_id = store.resolve_run_id(conn, args.run_id)
        if args.html:
            output = args.output or args.results.parent / f"report-{run_id}.html"
            _write(args, output, render_html(conn, run_id))
            return 0
        info = store.run_info(conn, run_id)
        title = f"run {run_id} ({info.get('workload')}): {info.get('status')}"
        if args.format == "table":
            workload = recorded_workload(info.get("workload_yaml") or "",
                                         str(info.get("workload")))
            print(meaning.render(conn, run_id, title=title, results=str(args.results),
                                 workload=workload))
        else:
            print(format_summary(store.summary(conn, run_id), args.format, title=title))
        return 0
    finally:
        interrupts.close(conn)


def _cmd_query(args: argparse.Namespace) -> int:
    # Read-only, and no file but the database itself: a query cannot write or read files.
    conn = interrupts.watched(store.connect(args.results, read_only=True,
                                            external_access=False))
    try:
        columns, rows = store.query(conn, args.sql)
        print(format_rows(columns, rows, args.format))
        return 0
    finally:
        interrupts.close(conn)


def _cmd_ingest(args: argparse.Namespace) -> int:
    conn = store.connect(args.results)
    try:
        done = ingest_log_dir(conn, args.log_dir)
        for backend, repetition, rows in done.passes:
            print(f"{backend} rep {repetition}: {rows:,} operations")
        print(format_summary(store.summary(conn, done.run_id), "table",
                             title=f"run {done.run_id}: {done.status}, ingested from "
                                   f"{args.log_dir} into {args.results}"))
        return 0
    finally:
        conn.close()


def _cmd_services(args: argparse.Namespace) -> int:
    if args.action == "up":
        state = services.services_up()
        for name, entry in state.items():
            print(f"{name}: running (pid {entry['pid']}) at {redact(str(entry['url']))}")
        print(f"state in {services.services_dir()}; `services down` stops them")
    elif args.action == "down":
        stopped = services.services_down(purge=args.purge)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running")
              + (f"; removed the data in {services.services_dir()}" if args.purge else ""))
    elif args.action == "cleanup":
        strays = services.find_strays()
        services.clean_strays(strays)
        for stray in strays:
            print(f"removed {stray.describe().removeprefix('stray: ')}")
        if not strays:
            print("no stray servers")
    else:
        state = services.read_state()
        if not state:
            print("no servers kept running (`services up` starts them)")
        for name, entry in state.items():
            print(f"{name}: running (pid {entry['pid']}) at {redact(str(entry['url']))}")
        strays = services.find_strays()
        for stray in strays:
            print(stray.describe())
        if strays:
            print("`make benchmark-cleanup` (or `python -m orchestrator services cleanup`) "
                  "stops them and deletes their data")
    return 0


# Commands that hold files or servers while they work: Ctrl-C raises KeyboardInterrupt in
# them, so that what they opened is closed on the way out. (`run` handles signals itself, as
# does `suite` while one of its runs goes on; `validate` holds nothing.) Those that run SQL
# for as long as a query takes also have their queries interrupted (see interrupts).
_HOLDING = ("suite", "ingest", "services", "trace")
_RUNNING_SQL = ("report", "query")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the block (in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT,
                                                                   signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    learn_environment()  # what any command says must not carry the servers' passwords
    args = build_parser().parse_args(argv)
    handler = {"run": _cmd_run, "suite": _cmd_suite, "validate": _cmd_validate,
               "report": _cmd_report,
               "query": _cmd_query, "ingest": _cmd_ingest,
               "services": _cmd_services, "trace": trace_cli.run}[args.command]
    try:
        if args.command in _RUNNING_SQL:
            with interrupts.stoppable(getattr(args, "timeout", None)):
                return handler(args)
        if args.command in _HOLDING:
            with _interruptible():
                return handler(args)
        return handler(args)
    except OrchestratorError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        interrupts.say_interrupted()
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # e.g. `... query "..." | head`
        sys.stderr.close()
        return 0
