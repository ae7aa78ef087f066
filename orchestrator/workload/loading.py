"""Reading a workload: the YAML file, command-line overrides (``--set path=value``), the model.

:func:`load_workload` is the way in: it reads the file, applies the overrides to the data, and
validates the result into a :class:`~orchestrator.workload.model.Workload`. The workload's text
(with the overrides appended as comments) is kept with the run.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError, WorkloadError
from orchestrator.workload.document import MAX_BYTES, DocumentError, decode, parse_yaml
from orchestrator.workload.model import Workload
from orchestrator.workload.validation import parse_workload
from proxies import ConfigProblem


def read_workload_text(path: str | Path) -> tuple[str, Any]:
    """Read a workload file: its text and its parsed YAML data (see
    :mod:`orchestrator.workload.document` for what is refused)."""
    source = str(path)
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
            size = os.fstat(stream.fileno()).st_size
    except OSError as exc:
        raise WorkloadError(source, [ConfigProblem("(file)", "a readable YAML file",
                                                   exc.strerror or str(exc))]) from exc
    try:
        text = decode(raw, size)
        data = parse_yaml(text)
    except DocumentError as exc:
        raise WorkloadError(source, exc.issues) from None
    if data is None:
        raise WorkloadError(source, [ConfigProblem(
            "(document)", "a mapping of workload settings (write `{}` to mean every default)",
            "an empty document" if not text.strip() else "only comments, or a bare null")])
    return text, data


# A pass runs for a time or for a number of operations. In one file, both is a contradiction
# (validation reports it); an override of one replaces the other where the file set it, so that
# ``--duration 10`` runs a file written with iterations for 10 s.
_MEASURE_BY = {"duration_s": ("write_iterations", "read_iterations"),
               "write_iterations": ("duration_s",), "read_iterations": ("duration_s",)}


def apply_overrides(data: Any, overrides: list[str]) -> Any:
    """Apply ``path=value`` overrides (dotted path, YAML value) to a copy of ``data``."""
    result = copy.deepcopy(data) if data is not None else {}
    overridden: set[str] = set()
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise UsageError(f"--set {item!r}: expected path=value, e.g. network.latency_ms=1.5")
        try:
            value = parse_yaml(text) if text.strip() else None
        except DocumentError as exc:
            problems = "; ".join(f"expected {i.expected}, found {i.found}" for i in exc.issues)
            raise UsageError(f"--set {item!r}: the value cannot be read: {problems}") from None
        target = result
        parts = path.strip().split(".")
        if isinstance(result, dict) and len(parts) == 1 and value is not None:
            for other in _MEASURE_BY.get(parts[0], ()):
                if other not in overridden:
                    result.pop(other, None)
        overridden.add(parts[0])
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(target, list):
                if not (part.isascii() and part.isdigit()) or int(part) >= len(target):
                    raise UsageError(f"--set {item!r}: {'.'.join(parts[:depth + 1])} is not an "
                                     f"index of a list of {len(target)} items")
                if last:
                    target[int(part)] = value
                else:
                    target = target[int(part)]
            elif isinstance(target, dict):
                if last:
                    target[part] = value
                else:
                    if target.get(part) is None:
                        target[part] = {}
                    target = target[part]
            else:
                raise UsageError(f"--set {item!r}: {'.'.join(parts[:depth])} is not a mapping")
    return result


_OVERRIDES_HEAD = "\n# overrides (--set):\n"
_OVERRIDE_MARK = "#   "


def load_workload(path: str | Path, overrides: list[str] | None = None) -> Workload:
    """Read, override and validate a workload file; raise WorkloadError listing every issue."""
    text, data = read_workload_text(path)
    if overrides:
        data = apply_overrides(data, overrides)
        text += _OVERRIDES_HEAD + "".join(f"{_OVERRIDE_MARK}{o}\n" for o in overrides)
    return parse_workload(data, source=str(path), text=text,
                          default_name=Path(path).stem)


def recorded_workload(text: str, name: str) -> Workload | None:
    """The workload a run recorded (its file's text, the ``--set`` overrides appended as
    comments by :func:`load_workload`), or None when that text no longer validates (a
    database written by another version)."""
    base, _, tail = text.partition(_OVERRIDES_HEAD)
    overrides = [line.removeprefix(_OVERRIDE_MARK) for line in tail.splitlines()
                 if line.startswith(_OVERRIDE_MARK)]
    try:
        data = parse_yaml(base)
        if overrides:
            data = apply_overrides(data, overrides)
        return parse_workload(data, source="<recorded>", text=text, default_name=name)
    except (DocumentError, WorkloadError, UsageError):
        return None
