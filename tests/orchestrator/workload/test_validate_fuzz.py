"""`validate` under fuzzing: random YAML documents and mutations of the shipped workloads end in
exit 0 or 2 within a few seconds, never in a traceback."""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz import examples
from support.repo import WORKLOADS

from orchestrator.cli import main

SHIPPED = [yaml.safe_load(path.read_text()) for path in WORKLOADS]
KEYS = sorted({key for data in SHIPPED for key in data} | {
    "network", "thresholds", "target_rate", "warmup_s", "allowed_error_rate", "repeat",
    "delete_ratio", "key_prefix", "mode", "latency_ms", "faults", "options", "type", "name",
    "min", "max", "writes", "reads", "theta", "at_s", "proxy", "toxic", "*", "backends"})

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["auto", "null", "valkey", "postgres-cache", "pgcache", "toxiproxy",
                     "zipfian", "get.p99_ms < 5", "down", ".nan", "-.inf", "1e999"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(keys, inner, max_size=8)),
    max_leaves=60,
)

FUZZ = settings(max_examples=examples(150), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LIMIT_S = 5.0


def _validate(content: bytes) -> tuple[int, str]:
    """Run `validate` in this process on a file holding ``content``: (exit code, output)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.yaml"
        path.write_bytes(content)
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", str(path)])
        took = time.monotonic() - started
    assert took < LIMIT_S, f"validate took {took:.1f} s"
    assert code in (0, 2), (code, err.getvalue()[-500:])
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return code, err.getvalue()


def _dump(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()


def _set(data: Any, path: list[int], value: Any) -> Any:
    """``data`` with the node reached by following ``path`` (child indices) replaced."""
    if not path:
        return value
    if isinstance(data, dict) and data:
        key = list(data)[path[0] % len(data)]
        return {**data, key: _set(data[key], path[1:], value)}
    if isinstance(data, list) and data:
        i = path[0] % len(data)
        return [*data[:i], _set(data[i], path[1:], value), *data[i + 1:]]
    return value


class TestValidateFuzz:
    """No input makes `validate` crash or hang."""

    @FUZZ
    @given(documents)
    def test_random_documents(self, data: Any) -> None:
        """Any YAML document: exit 0 or 2; a refused one always says why."""
        code, err = _validate(_dump(data))
        if code == 2:
            assert err.startswith("error: ") and "expected" in err

    @FUZZ
    @given(st.sampled_from(range(len(SHIPPED))),
           st.lists(st.tuples(st.lists(st.integers(0, 50), max_size=5), documents),
                    min_size=1, max_size=4))
    def test_mutated_workloads(self, which: int, edits: list[tuple[list[int], Any]]) -> None:
        """A shipped workload with values replaced anywhere: exit 0 or 2."""
        data = SHIPPED[which]
        for path, value in edits:
            data = _set(data, path, value)
        _validate(_dump(data))

    @FUZZ
    @given(st.sampled_from(WORKLOADS),
           st.lists(st.tuples(st.integers(0, 4000), st.binary(max_size=8)), min_size=1,
                    max_size=6))
    def test_mutated_bytes(self, path: Path, splices: list[tuple[int, bytes]]) -> None:
        """A shipped workload file with bytes spliced in anywhere: exit 0 or 2."""
        content = path.read_bytes()
        for at, chunk in splices:
            at %= len(content) + 1
            content = content[:at] + chunk + content[at + len(chunk) // 2:]
        _validate(content)

    @FUZZ
    @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
    def test_garbage(self, content: bytes) -> None:
        """Arbitrary bytes or text: exit 0 or 2."""
        _validate(content)


class TestShippedStillValid:
    """The fuzzer's baseline: every shipped workload validates (exit 0)."""

    def test_shipped(self) -> None:
        """Each workloads/*.yaml exits 0 in-process."""
        for path in WORKLOADS:
            assert _validate(path.read_bytes())[0] == 0, path
        assert not any(isinstance(v, float) and not math.isfinite(v)
                       for data in SHIPPED for v in data.values())
