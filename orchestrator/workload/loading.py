"""Reading a workload: the YAML file, command-line overrides (``--set path=value``), the model.

:func:`load_workload` is the way in: it reads the file, applies the overrides to the data, and
validates the result into a :class:`~orchestrator.workload.model.Workload`. The workload's text
(with the overrides appended as comments) is kept with the run.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import Issue, UsageError, WorkloadError
from orchestrator.workload.model import Workload
from orchestrator.workload.validation import parse_workload


def read_workload_text(path: str | Path) -> tuple[str, Any]:
    """Read a workload file: its text and its parsed YAML data."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(source, [Issue("(file)", "a readable YAML file",
                                           exc.strerror or str(exc))]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkloadError(source, [Issue(where, "valid YAML", str(problem))]) from exc
    return text, data


def apply_overrides(data: Any, overrides: list[str]) -> Any:
    """Apply ``path=value`` overrides (dotted path, YAML value) to a copy of ``data``."""
    result = copy.deepcopy(data) if data is not None else {}
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path.strip():
            raise UsageError(f"--set {item!r}: expected path=value, e.g. network.latency_ms=1.5")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise UsageError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        target = result
        parts = path.strip().split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(target, list):
                if not part.isdigit() or int(part) >= len(target):
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


def load_workload(path: str | Path, overrides: list[str] | None = None) -> Workload:
    """Read, override and validate a workload file; raise WorkloadError listing every issue."""
    text, data = read_workload_text(path)
    if overrides:
        data = apply_overrides(data, overrides)
        text += "\n# overrides (--set):\n" + "".join(f"#   {o}\n" for o in overrides)
    return parse_workload(data, source=str(path), text=text,
                          default_name=Path(path).stem)
