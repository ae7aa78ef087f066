"""orchestrator.workload.document: hostile YAML is refused with its path, cheaply, never a crash."""

from __future__ import annotations

import time

import pytest

from orchestrator.workload.document import (
    MAX_BYTES,
    MAX_DEPTH,
    DocumentError,
    decode,
    parse_yaml,
)
from proxies import ConfigProblem


def _refused(text: str) -> list[ConfigProblem]:
    with pytest.raises(DocumentError) as info:
        parse_yaml(text)
    return info.value.issues


BOMB = "\n".join([
    "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]",
    *(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]"
      for i in range(8)),
])


class TestBytes:
    """What comes in must be small UTF-8 text."""

    def test_binary_garbage(self) -> None:
        """Bytes that are not UTF-8 are named with their offset."""
        with pytest.raises(DocumentError) as info:
            decode(b"writers: 1\n\xe9\xff\x00")
        (issue,) = info.value.issues
        assert (issue.path, issue.expected) == ("(file)", "UTF-8 text")
        assert "0xe9 at offset 11" in issue.found

    def test_size_bound(self) -> None:
        """A document above MAX_BYTES is refused before it is parsed, with its size."""
        with pytest.raises(DocumentError) as info:
            decode(b"#" * (MAX_BYTES + 1), size=17_000_000)
        assert info.value.issues[0].found == "17,000,000 bytes"

    def test_control_characters(self) -> None:
        """A NUL character is a YAML error with its line, not a crash."""
        (issue,) = _refused("writers: 1\nreaders: \x00\n")
        assert issue.expected == "valid YAML"
        assert issue.path.startswith("line 2")


class TestStructure:
    """Aliases, deep nesting and duplicate keys are refused with their YAML path."""

    def test_alias_bomb(self) -> None:
        """A billion-laughs document is refused at its first alias, at once."""
        started = time.monotonic()
        (issue,) = _refused(BOMB)
        assert time.monotonic() - started < 1
        assert issue.path == "b[0]"
        assert "aliases" in issue.expected
        assert issue.found == "the alias *a at line 2, column 8"

    def test_merge_key_alias(self) -> None:
        """A merge (<<: *name) is an alias too."""
        (issue,) = _refused("base: &b {writers: 1}\nnetwork:\n  <<: *b\n")
        assert issue.path == "network.<<"

    def test_anchor_alone_is_harmless(self) -> None:
        """An anchor nobody refers to is just a value."""
        assert parse_yaml("writers: &w 3\n") == {"writers": 3}

    def test_depth(self) -> None:
        """Nesting deeper than MAX_DEPTH is refused (flow and block style)."""
        (issue,) = _refused("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))
        assert f"at most {MAX_DEPTH} levels" in issue.expected
        block = "".join(f"{' ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + " " * 50 + "x\n"
        assert "levels" in _refused(block)[0].expected
        assert parse_yaml("[" * 10 + "]" * 10) == [[[[[[[[[[]]]]]]]]]]

    def test_duplicate_keys_everywhere(self) -> None:
        """Every repeated key is reported with its path and both lines."""
        issues = _refused("writers: 1\nnetwork:\n  mode: none\n  mode: auto\nwriters: 2\n"
                          "backends:\n  - {name: a, name: b}\n")
        by_path = {i.path: i.found for i in issues}
        assert by_path["writers"] == "'writers' again at line 5, column 1 (first at line 1, " \
                                     "column 1)"
        assert set(by_path) == {"writers", "network.mode", "backends[0].name"}

    def test_same_text_different_type_is_not_a_duplicate(self) -> None:
        """1 and '1' are different keys."""
        assert parse_yaml("1: a\n'1': b\n") == {1: "a", "1": "b"}

    def test_huge_integer(self) -> None:
        """An integer Python refuses to read (over 4300 digits) is an issue, not a crash."""
        (issue,) = _refused("seed: " + "9" * 5000 + "\n")
        assert issue.path == "(file)"

    def test_empty(self) -> None:
        """An empty document is None (the caller decides what that means)."""
        assert parse_yaml("") is None
        assert parse_yaml("# only a comment\n") is None
