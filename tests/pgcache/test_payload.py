"""Notification payloads: what a write announces and how a receiver reads it, no server."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pgcache._keys import LONG_KEY_CHARS, key_digest
from pgcache._payload import (
    FLUSH_ALL,
    chunks,
    decode,
    flush_all,
    header,
    heartbeat,
    inline_parts,
    name,
    own_prefix,
    own_seq,
)

SENDER = "0123456789abcdef"


def assemble(head: str, items: list[tuple[str, int, int]]) -> str:
    """What set_batch_notify builds in SQL: head, then "sign*version,name" joined, "]"."""
    return head + ",".join(f"{sign * version},{text}" for text, sign, version in items) + "]"


class TestPayloads:
    def test_inline_payload_names_key_and_version(self) -> None:
        """A one-key payload decodes to the key and the version the statement wrote."""
        head, tail = inline_parts(SENDER, 7, 'k "quoted" ü\n')
        notice = decode(head + "123" + tail)
        assert notice is not None
        assert notice.sender == SENDER and notice.items == [123, 'k "quoted" ü\n']
        assert (head + "123" + tail).isascii()

    def test_long_key_goes_by_digest_with_negative_version(self) -> None:
        """A key too long for a payload is named by its hash, its version negated."""
        key = "é" * 9000
        head, tail = inline_parts(SENDER, 1, key)
        payload = head + "4" + tail
        assert json.loads(payload) == [SENDER, 1, -4, key_digest(key)] and len(payload) < 100

    def test_heartbeat_and_flush_all(self) -> None:
        """A heartbeat carries no items; flush-all is version 0."""
        assert decode(heartbeat(SENDER, 3)) == (SENDER, [])
        notice = decode(flush_all(SENDER, 3))
        assert notice is not None and notice.items == [FLUSH_ALL, ""]

    def test_own_echo_yields_its_sequence_number(self) -> None:
        """Our own payloads are recognised by prefix and give back their seq unparsed."""
        prefix = own_prefix(SENDER)
        head, tail = inline_parts(SENDER, 4711, "k")
        assert (head + "9" + tail).startswith(prefix)
        assert own_seq(head + "9" + tail, prefix) == 4711
        assert own_seq(heartbeat(SENDER, 12), prefix) == 12

    def test_foreign_payloads_are_refused(self) -> None:
        """Anything but [sender, seq, (version, name)*] decodes to None."""
        for payload in ["", "not json", "{}", "[]", '["a"]', '["a", 1, 2]', '[1, 2]',
                        '["a", "1"]', '["a", true]', '["old-format", 5, "k"]']:
            assert decode(payload) is None, payload

    @given(st.lists(st.text(min_size=0, max_size=LONG_KEY_CHARS + 50), min_size=1,
                    max_size=300),
           st.integers(min_value=1, max_value=2**63 - 1))
    def test_chunks_keep_every_payload_under_the_limit(self, keys: list[str],
                                                       version: int) -> None:
        """Whatever the versions, no chunk's payload exceeds the limit, and every key is in
        exactly one chunk, in order."""
        head = header(SENDER, 2**40) + ","
        named = [name(k) for k in keys]
        chunk = chunks([text for text, _ in named], head=len(head), limit=1000)
        assert chunk == sorted(chunk)
        for index in set(chunk):
            items = [(t, s, version) for (t, s), c in zip(named, chunk, strict=True)
                     if c == index]
            payload = assemble(head, items)
            assert len(payload.encode()) <= 1000 or len(items) == 1
            assert decode(payload) is not None
