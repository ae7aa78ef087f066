"""Notification payloads: what a write announces and how a receiver reads it, no server."""

from __future__ import annotations

import json

from pgcache import CacheSettings
from pgcache._keys import LONG_KEY_CHARS, key_digest
from pgcache._notifier import Notifier
from pgcache._payload import (
    FLUSH_ALL,
    decode,
    flush_all,
    heartbeat,
    inline_parts,
    own_prefix,
    own_seq,
)
from pgcache._stats import Counters

SENDER = "0123456789abcdef"


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
        assert decode(heartbeat(SENDER, 3)) == (SENDER, [], 3)
        notice = decode(flush_all(SENDER, 3))
        assert notice is not None and notice.items == [FLUSH_ALL, ""]

    def test_own_echo_yields_its_sequence_number(self) -> None:
        """Our own payloads are recognised by prefix and give back their seq unparsed."""
        prefix = own_prefix(SENDER)
        head, tail = inline_parts(SENDER, 4711, "k")
        assert (head + "9" + tail).startswith(prefix)
        assert own_seq(head + "9" + tail, prefix) == 4711
        assert own_seq(heartbeat(SENDER, 12), prefix) == 12
        assert own_seq(prefix + "x]", prefix) is None and own_seq(prefix, prefix) is None

    def test_foreign_payloads_are_refused(self) -> None:
        """Anything but [sender, seq, (version, name)*] decodes to None."""
        for payload in ["", "not json", "{}", "[]", '["a"]', '["a", 1, 2]', '[1, 2]',
                        '["a", "1"]', '["a", true]', '["old-format", 5, "k"]']:
            assert decode(payload) is None, payload


    def test_hostile_payloads_decode_to_none_without_raising(self) -> None:
        """Nesting past the stack, numbers past int()'s digit limit, and 8000 bytes of
        anything: None, never an exception."""
        for payload in ["[" * 3999 + "]" * 3999, "[" * 7999, '["a",1,' + "9" * 5000 + ',"k"]',
                        '{"a":' * 1500 + "1" + "}" * 1500, "x" * 7999, '"\\ud800"']:
            assert decode(payload) is None, payload[:40]

    def test_an_own_prefix_with_a_huge_number_is_no_echo(self) -> None:
        """Our own prefix followed by more digits than a seq holds is not an echo (and
        int() of them would raise)."""
        prefix = own_prefix(SENDER)
        assert own_seq(prefix + "9" * 5000 + "]", prefix) is None
        assert own_seq(prefix + "9" * 20 + "]", prefix) is None
        assert own_seq(prefix + "9" * 19 + "]", prefix) == int("9" * 19)


class TestNotifierPayloads:
    def _notifier(self, **options: object) -> Notifier:
        settings = CacheSettings(dsn="postgresql://x@127.0.0.1/db", **options)  # type: ignore[arg-type]
        seqs = iter(range(1, 10_000))
        return Notifier(settings, connect=None, instance_id=SENDER,  # type: ignore[arg-type]
                        next_seq=lambda: next(seqs), counters=Counters(), heartbeat_every=None)

    def test_many_keys_pack_into_few_payloads_under_the_limit(self) -> None:
        """1000 queued writes leave in a handful of payloads, each below the byte limit."""
        notifier = self._notifier(notify_max_payload_bytes=7900)
        for i in range(1000):
            notifier.enqueue(f"key:{i}:ünïcode\n\"quoted\"", i + 1)
        seen: dict[str, int] = {}
        payloads = 0
        while not notifier.idle:
            payload, count = notifier._next_payload()
            payloads += 1
            assert len(payload.encode()) < 7900
            notice = decode(payload)
            assert notice is not None and notice.sender == SENDER
            assert len(notice.items) == 2 * count
            seen.update({notice.items[i + 1]: notice.items[i]
                         for i in range(0, len(notice.items), 2)})
        assert len(seen) == 1000 and payloads < 20

    def test_repeated_key_is_coalesced_to_its_newest_version(self) -> None:
        """Only the newest version of a key is sent."""
        notifier = self._notifier()
        for version in (3, 9, 5):
            notifier.enqueue("k", version)
        payload, count = notifier._next_payload()
        assert decode(payload) == (SENDER, [9, "k"], 1) and count == 1

    def test_long_key_goes_by_digest_with_negative_version(self) -> None:
        """A key too long for a payload is named by its hash."""
        notifier = self._notifier()
        key = "é" * 9000
        notifier.enqueue(key, 4)
        payload, _ = notifier._next_payload()
        assert decode(payload) == (SENDER, [-4, key_digest(key)], 1) and len(payload) < 100

    def test_overflow_turns_into_flush_all(self) -> None:
        """Past notify_max_pending distinct keys the others are told to flush."""
        notifier = self._notifier(notify_max_pending=3)
        for i in range(5):
            notifier.enqueue(str(i), i + 1)
        payload, _ = notifier._next_payload()
        assert decode(payload) == (SENDER, [FLUSH_ALL, ""], 1)

    def test_failed_payload_is_requeued_and_long_keys_become_a_flush(self) -> None:
        """What could not be sent is queued again; a long key's hash cannot be turned back
        into its key, so its retry is a flush of everything."""
        notifier = self._notifier()
        notifier.enqueue("short", 5)
        notifier.enqueue("x" * (LONG_KEY_CHARS + 1), 6)
        payload, _ = notifier._next_payload()
        assert notifier.idle
        notifier._requeue(payload)
        assert notifier._pending == {"short": 5} and notifier._flush_all
