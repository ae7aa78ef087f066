"""Reading a YAML document a user handed us, whatever it holds: bounded, strict, never a crash.

A workload is a small file (the shipped ones are under 2 KB), so anything that makes reading
it expensive or ambiguous is refused with an :class:`~proxies.errors.ConfigProblem` naming where
and what, before a single value is used:

* more than :data:`MAX_BYTES` (a 17 MB file is a mistake, and parsing it would take a minute);
* bytes that are not UTF-8, and characters YAML does not allow;
* aliases (``*name``, also in ``<<: *name`` merges): each one may copy a whole subtree, so ten
  lines can expand to billions of values (the "billion laughs"). Anchors alone are harmless;
* nesting deeper than :data:`MAX_DEPTH` levels (the parser recurses);
* the same key twice in one mapping (YAML's last-one-wins would silently drop the first);
* integers too long for Python to read (more than 4300 digits).

Everything is found on the composed node tree, before any value is constructed, so no check
depends on a value that could be huge. :func:`parse_yaml` is the only way in, for the file and
for each ``--set`` value alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from proxies import ConfigProblem

MAX_BYTES = 256 * 1024
MAX_DEPTH = 32


class DocumentError(Exception):
    """A document that cannot be read; carries the issues found (internal to this module's
    callers, which turn them into a WorkloadError or UsageError)."""

    def __init__(self, issues: list[ConfigProblem]) -> None:
        super().__init__("; ".join(str(i) for i in issues))
        self.issues = issues


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"


def _child(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases and deep nesting while it composes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._path: list[str] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        events: Any = self  # the parser's event methods carry no types
        part = (f"[{index}]" if isinstance(index, int) and not isinstance(index, bool) else
                str(index.value) if isinstance(index, ScalarNode) else
                "(a key)" if parent is not None and index is None else "")
        path = "".join(p if p.startswith("[") else "." + p for p in [*self._path, part] if p)
        path = path.lstrip(".") or "(document)"
        if self.check_event(AliasEvent):
            event = events.get_event()
            raise DocumentError([ConfigProblem(
                path, "a value written out (YAML aliases such as *name are not allowed in a "
                "workload)", f"the alias *{event.anchor} at {_where(event.start_mark)}")])
        if len(self._path) >= MAX_DEPTH:
            where = _where(events.peek_event().start_mark)
            raise DocumentError([ConfigProblem(path, f"at most {MAX_DEPTH} levels of nesting",
                                               f"deeper nesting at {where}")])
        self._path.append(part)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._path.pop()
        return node


def _duplicate_keys(root: Node) -> Iterator[ConfigProblem]:
    """Every key that appears twice in one mapping, with its path."""
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, MappingNode):
            first: dict[tuple[str, str], Any] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, ScalarNode) else "(a key)"
                if isinstance(key, ScalarNode):
                    seen = first.setdefault((key.tag, key.value), key.start_mark)
                    if seen is not key.start_mark:
                        yield ConfigProblem(_child(path, name), "each key once in a mapping",
                                            f"{name!r} again at {_where(key.start_mark)} (first at "
                                            f"{_where(seen)})")
                stack.append((value, _child(path, name)))
        elif isinstance(node, SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def decode(data: bytes, size: int | None = None) -> str:
    """The text of a document's bytes (``size``: the whole file's, when only its start was
    read); DocumentError unless it is small UTF-8 text."""
    if len(data) > MAX_BYTES:
        found = f"{size:,} bytes" if size is not None and size > MAX_BYTES else \
            f"more than {MAX_BYTES:,} bytes"
        raise DocumentError([ConfigProblem(
            "(file)", f"a workload file of at most {MAX_BYTES:,} bytes", found)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError([ConfigProblem(
            "(file)", "UTF-8 text", f"the byte 0x{data[exc.start]:02x} at offset {exc.start}, "
            "which is not UTF-8 (is this a YAML file?)")]) from None


def parse_yaml(text: str) -> Any:
    """The data of one YAML document; DocumentError listing what makes it unreadable."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise DocumentError([ConfigProblem("(file)", f"a document of at most {MAX_BYTES:,} bytes",
                                           f"{len(text):,} characters")])
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        raise DocumentError([ConfigProblem(
            f"line {line}", "valid YAML",
            f"the character #x{exc.character:04x}, which YAML does not allow")]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = list(_duplicate_keys(node))
        if duplicates:
            raise DocumentError(duplicates)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError([ConfigProblem(_where(mark), "valid YAML", str(problem))]) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise DocumentError([ConfigProblem("(file)", "values YAML and Python can read",
                                           str(exc)[:200])]) from None
    finally:
        loader.dispose()
