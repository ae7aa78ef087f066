"""``python -m orchestrator trace synth|summary``: the trace commands' arguments and what
they do, set up by one call from :mod:`orchestrator.cli`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from orchestrator.trace.errors import TraceError
from orchestrator.trace.formats import FORMAT_CHOICES, TraceFormat
from orchestrator.trace.reader import BadLinePolicy, TraceReader
from orchestrator.trace.summary import summarize
from orchestrator.trace.synth import Arrivals, Distribution, SynthSpec, parse_mix, synthesize

_DEFAULTS = SynthSpec()


def _typed(kind: type, what: str) -> Any:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, found {text!r}") from None
    return convert


def add_parser(commands: Any) -> None:
    """Add ``trace`` and its subcommands to the orchestrator's subparsers."""
    trace = commands.add_parser(
        "trace", help="generate or summarise a cache trace",
        description="Cache traces (twitter/cache-trace's format, or the generic one): "
                    "generate one, or summarise one before replaying it (docs/traces.md).")
    sub = trace.add_subparsers(dest="trace_command", required=True, metavar="TRACE_COMMAND")
    synth = sub.add_parser(
        "synth", help="write a generated trace",
        description="Write a generated trace (twitter format unless --format generic), "
                    "compressed by the file name (.gz, .zst). Distributions: N, A..B, "
                    "lognormal:MEDIAN,SIGMA or V=W,V=W,...")
    synth.add_argument("--out", type=Path, required=True, metavar="FILE",
                       help="the trace file: FILE, FILE.gz or FILE.zst")
    synth.add_argument("--ops", type=_typed(int, "a whole number"), default=_DEFAULTS.ops,
                       metavar="N", help=f"operations (default {_DEFAULTS.ops:,})")
    synth.add_argument("--mix", default="get=0.9,set=0.1", metavar="WORD=SHARE,...",
                       help="memcached operations and their shares, summing to 1 (default "
                            "get=0.9,set=0.1)")
    synth.add_argument("--zipf", type=_typed(float, "a number"), default=_DEFAULTS.zipf,
                       metavar="THETA",
                       help=f"key popularity skew, 0 = uniform (default {_DEFAULTS.zipf:g})")
    synth.add_argument("--keys", type=_typed(int, "a whole number"), default=_DEFAULTS.keys,
                       metavar="K", help=f"distinct keys (default {_DEFAULTS.keys:,})")
    synth.add_argument("--key-size", default=_DEFAULTS.key_size.text, metavar="DIST",
                       help=f"key size in bytes, one per key (default "
                            f"{_DEFAULTS.key_size.text})")
    synth.add_argument("--value-size", default=_DEFAULTS.value_size.text, metavar="DIST",
                       help=f"value size of each write in bytes (default "
                            f"{_DEFAULTS.value_size.text})")
    synth.add_argument("--ttl", default=_DEFAULTS.ttl.text, metavar="DIST",
                       help=f"TTL of each write in seconds, 0 = no expiry (default "
                            f"{_DEFAULTS.ttl.text})")
    synth.add_argument("--clients", type=_typed(int, "a whole number"),
                       default=_DEFAULTS.clients, metavar="C",
                       help=f"client ids 1..C (default {_DEFAULTS.clients})")
    synth.add_argument("--rate", type=_typed(float, "a number"), default=_DEFAULTS.rate,
                       metavar="R", help=f"operations per second (default {_DEFAULTS.rate:g})")
    synth.add_argument("--arrivals", choices=[a.value for a in Arrivals],
                       default=_DEFAULTS.arrivals.value,
                       help="evenly spaced, or a Poisson process (default even)")
    synth.add_argument("--seed", type=_typed(int, "a whole number"), default=_DEFAULTS.seed,
                       metavar="S", help=f"random seed (default {_DEFAULTS.seed})")
    synth.add_argument("--format", choices=[f.value for f in TraceFormat],
                       default=_DEFAULTS.format.value,
                       help="twitter (seconds, no header; default) or generic (ms, header)")
    summary = sub.add_parser(
        "summary", help="print a trace's summary",
        description="Read a trace once (plain, .gz or .zst) and print its operation mix, "
                    "unique keys, key and value sizes, TTLs, clients, duration and rate.")
    summary.add_argument("file", type=Path, metavar="FILE")
    summary.add_argument("--format", choices=FORMAT_CHOICES, default="auto",
                         help="auto (default: generic if the file starts with its header), "
                              "twitter or generic")
    summary.add_argument("--on-bad-line", choices=[p.value for p in BadLinePolicy],
                         default=BadLinePolicy.FAIL.value,
                         help="fail at the first bad line (default), or skip and count them")
    summary.add_argument("--instances", type=_typed(int, "a whole number"), default=1,
                         metavar="N",
                         help="application instances the client ids are mapped onto "
                              "(default 1)")
    summary.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    """Carry out ``trace synth`` or ``trace summary``; a TraceError for bad input."""
    if args.trace_command == "synth":
        spec = SynthSpec(
            ops=args.ops, mix=tuple(parse_mix(args.mix).items()), zipf=args.zipf,
            keys=args.keys, key_size=Distribution.parse(args.key_size, "--key-size"),
            value_size=Distribution.parse(args.value_size, "--value-size"),
            ttl=Distribution.parse(args.ttl, "--ttl"), clients=args.clients,
            rate=args.rate, arrivals=Arrivals(args.arrivals), seed=args.seed,
            format=TraceFormat(args.format))
        if not args.out.parent.is_dir():
            raise TraceError("--out", "a file in an existing directory", str(args.out))
        written = synthesize(spec, args.out)
        print(f"wrote {written:,} operations to {args.out}")
        return 0
    reader = TraceReader(args.file, fmt=args.format, on_bad_line=args.on_bad_line,
                         instances=args.instances)
    summary = summarize(reader)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.text())
    return 0
