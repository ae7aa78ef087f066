"""The summary of a trace, from one streaming pass in bounded memory: what a run replaying it
prints first and stores with its results.

It gives the operation mix (per word and per kind, with the words skipped and the bad lines),
the distinct keys (exact up to :data:`EXACT_KEYS`, beyond that a HyperLogLog estimate with
its standard error, and said so), key sizes (over every operation) and value sizes (over the
writes) as percentiles, the TTLs of the writes (no expiry, the most common values,
percentiles), the clients and the operations of each application instance, and the duration
and rate. A timestamp stands for its whole tick (a second in the twitter format, a
millisecond in the generic one), so the duration is last - first + one tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.trace.formats import TraceFormat
from orchestrator.trace.ops import OpKind, TraceOp
from orchestrator.trace.reader import TraceReader
from orchestrator.trace.sketches import HLL_STANDARD_ERROR, DistinctCounter, Histogram

EXACT_KEYS = 100_000
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
# At most this many distinct TTL values and client ids are told apart; beyond, the rest are
# counted together (TTLs) or the count is stated as a lower bound (clients).
MAX_TTLS = 256
MAX_CLIENTS = 4096
COMMON_TTLS = 5


@dataclass(slots=True)
class _Accumulator:
    instances: int
    words: dict[str, int] = field(default_factory=dict)
    kinds: dict[OpKind, int] = field(default_factory=dict)
    keys: DistinctCounter = field(default_factory=lambda: DistinctCounter(EXACT_KEYS))
    key_sizes: Histogram = field(default_factory=Histogram)
    value_sizes: Histogram = field(default_factory=Histogram)
    ttls: Histogram = field(default_factory=Histogram)
    ttl_counts: dict[int, int] = field(default_factory=dict)
    ttl_other: int = 0
    no_expiry: int = 0
    clients: set[str] = field(default_factory=set)
    clients_capped: bool = False
    per_instance: list[int] = field(default_factory=list)
    first_ms: int | None = None
    last_ms: int | None = None
    min_ms: int | None = None
    max_ms: int | None = None
    out_of_order: int = 0

    def add(self, op: TraceOp) -> None:
        self.words[op.op] = self.words.get(op.op, 0) + 1
        self.kinds[op.kind] = self.kinds.get(op.kind, 0) + 1
        self.keys.add(op.key)
        self.key_sizes.add(op.key_size)
        if op.kind is OpKind.WRITE:
            self.value_sizes.add(op.value_size)
            self.ttls.add(op.ttl_s)
            if op.ttl_s == 0:
                self.no_expiry += 1
            if op.ttl_s in self.ttl_counts or len(self.ttl_counts) < MAX_TTLS:
                self.ttl_counts[op.ttl_s] = self.ttl_counts.get(op.ttl_s, 0) + 1
            else:
                self.ttl_other += 1
        if op.client not in self.clients:
            if len(self.clients) < MAX_CLIENTS:
                self.clients.add(op.client)
            else:
                self.clients_capped = True
        self.per_instance[op.instance] += 1
        t = op.offset_ms
        if self.first_ms is None:
            self.first_ms = self.min_ms = self.max_ms = t
        else:
            assert self.min_ms is not None and self.max_ms is not None
            assert self.last_ms is not None
            if t < self.last_ms:
                self.out_of_order += 1
            self.min_ms = min(self.min_ms, t)
            self.max_ms = max(self.max_ms, t)
        self.last_ms = t


def _sizes(h: Histogram) -> dict[str, Any]:
    out: dict[str, Any] = {"count": h.count, "min": h.min, "mean": h.mean, "max": h.max}
    for q in PERCENTILES:
        out[f"p{q:g}"] = h.percentile(q)
    return out


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """The figures of one trace; :meth:`as_dict` for storing them, :meth:`text` to print."""

    figures: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready types (a copy)."""
        copied: dict[str, Any] = _copy(self.figures)
        return copied

    def text(self) -> str:
        """The summary as a few lines of text."""
        f = self.figures
        ops = f["ops"]
        lines = [f"trace {f['source']} ({f['format']}): {f['lines']:,} lines, {ops:,} "
                 f"operations"]
        kinds = ", ".join(f"{k} {n:,} ({_share(n, ops)})" for k, n in f["kinds"].items())
        words = ", ".join(f"{w} {n:,}" for w, n in f["words"].items())
        lines.append(f"  mix: {kinds or 'none'}; by word: {words or 'none'}")
        skipped = ", ".join(f"{w} {n:,}" for w, n in f["skipped_ops"].items())
        lines.append(f"  skipped: {f['skipped']:,} operations outside memcached's vocabulary"
                     + (f" ({skipped})" if skipped else "") + f"; {f['bad_lines']:,} bad lines")
        for bad in f["bad_examples"][:3]:
            lines.append(f"    bad {bad}")
        keys = f["unique_keys"]
        how = ("exact" if keys["exact"] else
               f"HyperLogLog estimate, standard error {keys['standard_error'] * 100:.2f} %")
        lines.append(f"  unique keys: {keys['count']:,} ({how})")
        for name, label in (("key_size", "key sizes"), ("value_size", "value sizes (writes)")):
            lines.append(f"  {label}: {_percentiles(f[name])}")
        ttl = f["ttl"]
        common = ", ".join(f"{t} s {_share(n, ttl['writes'])}" for t, n in ttl["common"])
        lines.append(f"  TTLs (writes): no expiry {ttl['no_expiry']:,} "
                     f"({_share(ttl['no_expiry'], ttl['writes'])}); most common: "
                     f"{common or 'none'}; {_percentiles(ttl['seconds'])} s")
        clients = f["clients"]
        lines.append(f"  clients: {'over ' if clients['capped'] else ''}{clients['count']:,}; "
                     f"operations per instance: "
                     + ", ".join(f"{n:,}" for n in f["ops_per_instance"]))
        rate = f"{f['rate_per_s']:,.1f} ops/s" if f["rate_per_s"] is not None else "no rate"
        lines.append(f"  duration: {f['duration_s']:,.3f} s, {rate}"
                     + (f"; {f['out_of_order']:,} operations earlier than the one before"
                        if f["out_of_order"] else ""))
        return "\n".join(lines)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} %" if total else "-"


def _percentiles(sizes: dict[str, Any]) -> str:
    if not sizes["count"]:
        return "none"
    return (f"min {sizes['min']:,}, " + ", ".join(f"p{q:g} {sizes[f'p{q:g}']:,}"
                                                   for q in PERCENTILES)
            + f", max {sizes['max']:,}, mean {sizes['mean']:,.1f}")


def summarize(reader: TraceReader) -> TraceSummary:
    """Read the trace once and summarise it."""
    acc = _Accumulator(reader.instances, per_instance=[0] * reader.instances)
    for op in reader:
        acc.add(op)
    tick = 1000 if reader.format is TraceFormat.TWITTER else 1
    span_ms = (acc.max_ms - acc.min_ms + tick) if acc.max_ms is not None and \
        acc.min_ms is not None else 0
    total = reader.ops
    common = sorted(acc.ttl_counts.items(), key=lambda item: (-item[1], item[0]))[:COMMON_TTLS]
    figures: dict[str, Any] = {
        "source": reader.source,
        "format": reader.format.value if reader.format else None,
        "instances": reader.instances,
        "lines": reader.lines,
        "ops": total,
        "kinds": {k.value: acc.kinds[k] for k in OpKind if k in acc.kinds},
        "words": dict(sorted(acc.words.items(), key=lambda item: (-item[1], item[0]))),
        "skipped": reader.skipped,
        "skipped_ops": dict(sorted(reader.skipped_ops.items())),
        "bad_lines": reader.bad_lines,
        "bad_examples": [str(b) for b in reader.bad_examples],
        "unique_keys": {"count": acc.keys.count(), "exact": acc.keys.is_exact,
                        "exact_limit": EXACT_KEYS,
                        "method": "exact" if acc.keys.is_exact else "hyperloglog",
                        "standard_error": 0.0 if acc.keys.is_exact else HLL_STANDARD_ERROR},
        "key_size": _sizes(acc.key_sizes),
        "value_size": _sizes(acc.value_sizes),
        "ttl": {"writes": acc.ttls.count, "no_expiry": acc.no_expiry,
                "common": [[t, n] for t, n in common], "other": acc.ttl_other,
                "seconds": _sizes(acc.ttls)},
        "clients": {"count": len(acc.clients), "capped": acc.clients_capped},
        "ops_per_instance": acc.per_instance,
        "duration_s": span_ms / 1000,
        "rate_per_s": total / (span_ms / 1000) if span_ms else None,
        "out_of_order": acc.out_of_order,
    }
    return TraceSummary(figures)
