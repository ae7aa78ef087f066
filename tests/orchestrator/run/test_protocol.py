"""orchestrator.run.protocol: the worker's spec and the typed messages, on the wire."""

from __future__ import annotations

import json

import pytest

from orchestrator.run.protocol import (
    Done,
    Failed,
    Go,
    Message,
    Progress,
    Ready,
    Stop,
    WorkerProtocolError,
    WorkerSpec,
    decode,
    encode,
)
from orchestrator.workload.model import BackendSpec, NetworkMode
from proxies import Endpoints


class TestMessages:
    """Each message is one JSON line, and decodes to what was encoded."""

    @pytest.mark.parametrize(("message", "wire"), [
        (Ready(), {"type": "ready"}),
        (Progress(10, 1), {"type": "progress", "ops": 10, "errors": 1}),
        (Done(12, 0), {"type": "done", "ops": 12, "errors": 0}),
        (Failed("could not write x: No space left on device"),
         {"type": "failed", "error": "could not write x: No space left on device"}),
        (Go(123456789), {"type": "go", "start_ns": 123456789}),
        (Stop(), {"type": "stop"}),
    ])
    def test_round_trip(self, message: Message, wire: dict[str, object]) -> None:
        """encode gives one newline-terminated JSON object; decode gives the message back."""
        line = encode(message)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line) == wire
        assert decode(line) == message

    @pytest.mark.parametrize("line", [b"hello\n", b"{}\n", b'{"type": "dance"}\n',
                                      b'{"type": "go"}\n', b"[1]\n"])
    def test_not_a_message(self, line: bytes) -> None:
        """Anything else is a WorkerProtocolError, never a half-made message."""
        with pytest.raises(WorkerProtocolError):
            decode(line)


class TestWorkerSpec:
    """The spec travels as JSON and comes back equal."""

    def test_json_round_trip(self) -> None:
        """Nested backend and endpoints survive to_json / from_json."""
        spec = WorkerSpec(run_id="r", backend=BackendSpec("pg", "pgcache", {"x": 1}),
                          repetition=2, process=1, processes=3, workload={"writers": 1},
                          endpoints=Endpoints("postgresql://a/b", "redis://c/0",
                                              "postgresql://a/b"),
                          network_mode=NetworkMode.INPROCESS, log_dir="/tmp/x")
        assert WorkerSpec.from_json(spec.to_json()) == spec
        assert WorkerSpec.from_json(spec.to_json()).network_mode is NetworkMode.INPROCESS
        assert json.loads(spec.to_json())["network_mode"] == "inprocess"
        assert spec.stem == "pg.r2.p1"
