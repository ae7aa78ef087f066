"""Cache traces: reading them (streamed), generating them, and summarising them, so that a
user's own traffic can be replayed.

A trace is read as an iterator of :class:`TraceOp` (a typed operation with its intended time,
``offset_ms`` after the first line, and its application instance), which a load loop paces.

``errors``: :class:`TraceError`, the one error of the package.
``ops``: the operation type, memcached's words mapped to get / write / delete, and the client
id -> instance mapping.
``formats``: the twitter and generic line formats.
``streams``: plain, ``.gz`` and ``.zst`` files read and written in chunks.
``reader``: :class:`TraceReader`, the operations of a file, with ``on_bad_line`` and its counts.
``sketches``: bounded-memory distinct counts and histograms.
``summary``: :func:`summarize`, one pass to a printable, storable summary.
``synth``: the generator.
``cli``: ``python -m orchestrator trace synth|summary``.
"""

from orchestrator.trace.errors import TraceError
from orchestrator.trace.formats import GENERIC_HEADER, TraceFormat
from orchestrator.trace.ops import OP_KINDS, OpKind, TraceOp, instance_for
from orchestrator.trace.reader import BadLine, BadLinePolicy, TraceReader
from orchestrator.trace.summary import TraceSummary, summarize
from orchestrator.trace.synth import Arrivals, Distribution, SynthSpec, generate, synthesize

__all__ = [
    "GENERIC_HEADER",
    "OP_KINDS",
    "Arrivals",
    "BadLine",
    "BadLinePolicy",
    "Distribution",
    "OpKind",
    "SynthSpec",
    "TraceError",
    "TraceFormat",
    "TraceOp",
    "TraceReader",
    "TraceSummary",
    "generate",
    "instance_for",
    "summarize",
    "synthesize",
]
