"""The local cache's bookkeeping and the notifier's payload packing, without a server."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pgcache import CacheSettings
from pgcache._listener import Notifier
from pgcache._local import LONG_KEY_CHARS, LocalCache, key_digest

FAR = 1e18  # an expiry that never passes


class TestLocalCache:
    def test_lru_bound_evicts_least_recently_used(self) -> None:
        """Beyond max_entries the least recently installed or read copy goes."""
        local = LocalCache(max_entries=2, ttl=60)
        local.install("a", b"1", 0, 1, FAR)
        local.install("b", b"2", 0, 2, FAR)
        local.data.move_to_end("a")  # what a local hit does
        local.install("c", b"3", 0, 3, FAR)
        assert list(local.data) == ["a", "c"]

    def test_install_never_replaces_a_newer_copy(self) -> None:
        """An older version arriving late does not overwrite a newer copy."""
        local = LocalCache(max_entries=10, ttl=60)
        local.install("k", b"new", 0, 5, FAR)
        local.install("k", b"old", 0, 4, FAR)
        assert local.data["k"].value == b"new"

    def test_invalidation_for_older_version_keeps_copy(self) -> None:
        """A notification for version v never evicts a copy of a newer version."""
        local = LocalCache(max_entries=10, ttl=60)
        local.install("k", b"v5", 0, 5, FAR)
        assert not local.invalidate("k", 4)
        assert not local.invalidate("k", 5)
        assert local.invalidate("k", 6)
        assert "k" not in local.data

    def test_invalidation_during_fetch_is_reported_to_the_fetch(self) -> None:
        """end_fetch returns the highest version invalidated while the read was in flight."""
        local = LocalCache(max_entries=10, ttl=60)
        local.begin_fetch("k")
        local.begin_fetch("k")
        local.invalidate("k", 7)
        local.invalidate("k", 3)
        assert local.end_fetch("k") == 7
        assert local.end_fetch("k") == 7
        assert local.inflight == {}

    def test_flush_bumps_epoch_and_keeps_reads_in_flight_tracked(self) -> None:
        """A flush drops copies and makes every read in flight stale via the epoch."""
        local = LocalCache(max_entries=10, ttl=60)
        local.install("a", b"1", 0, 1, FAR)
        epoch = local.begin_fetch("b")
        assert local.flush() == 1
        assert local.epoch != epoch and len(local) == 0
        assert local.end_fetch("b") == 0

    def test_long_keys_are_indexed_by_digest_while_held_or_fetched(self) -> None:
        """Long keys can be found from their digest only while relevant."""
        local = LocalCache(max_entries=1, ttl=60)
        long_a, long_b = "a" * (LONG_KEY_CHARS + 1), "b" * (LONG_KEY_CHARS + 1)
        local.begin_fetch(long_a)
        assert local.key_for_digest(key_digest(long_a)) == long_a
        local.end_fetch(long_a)
        assert local.key_for_digest(key_digest(long_a)) is None
        local.install(long_a, b"1", 0, 1, FAR)
        local.install(long_b, b"2", 0, 2, FAR)  # evicts long_a (max_entries=1)
        assert local.key_for_digest(key_digest(long_a)) is None
        assert local.key_for_digest(key_digest(long_b)) == long_b

    @given(st.lists(st.tuples(st.sampled_from(["install", "invalidate"]),
                              st.integers(min_value=1, max_value=20)), max_size=40))
    def test_versions_only_move_forward(self, ops: list[tuple[str, int]]) -> None:
        """A copy is replaced only by a newer one and survives exactly the older invalidations."""
        local = LocalCache(max_entries=10, ttl=60)
        held: int | None = None  # the model
        for op, version in ops:
            if op == "install":
                held = version if held is None else max(held, version)
                local.install("k", b"x", 0, version, FAR)
            else:
                if held is not None and held < version:
                    held = None
                local.invalidate("k", version)
            entry = local.data.get("k")
            assert (entry.version if entry is not None else None) == held


class TestNotifierPayloads:
    def _notifier(self, **options: object) -> Notifier:
        settings = CacheSettings(dsn="postgresql://x@127.0.0.1/db", **options)  # type: ignore[arg-type]
        return Notifier(settings, connect=None, instance_id="me")  # type: ignore[arg-type]

    def test_many_keys_pack_into_few_payloads_under_the_limit(self) -> None:
        """1000 queued writes leave in a handful of payloads, each below the byte limit."""
        notifier = self._notifier(notify_max_payload_bytes=7900)
        for i in range(1000):
            notifier.enqueue(f"key:{i}:ünïcode\n\"quoted\"", i + 1)
        seen: dict[str, int] = {}
        payloads = 0
        while notifier._pending:
            payload, count = notifier._next_payload()
            payloads += 1
            assert len(payload.encode()) < 7900
            items = json.loads(payload)
            assert items[0] == "me" and len(items) == 1 + 2 * count
            seen.update({items[i + 1]: items[i] for i in range(1, len(items), 2)})
        assert len(seen) == 1000 and payloads < 20

    def test_repeated_key_is_coalesced_to_its_newest_version(self) -> None:
        """Only the newest version of a key is sent."""
        notifier = self._notifier()
        for version in (3, 9, 5):
            notifier.enqueue("k", version)
        payload, count = notifier._next_payload()
        assert json.loads(payload) == ["me", 9, "k"] and count == 1

    def test_long_key_goes_by_digest_with_negative_version(self) -> None:
        """A key too long for a payload is named by its digest."""
        notifier = self._notifier()
        key = "é" * 9000
        notifier.enqueue(key, 4)
        payload, _ = notifier._next_payload()
        assert json.loads(payload) == ["me", -4, key_digest(key)]
        assert len(payload) < 100

    def test_overflow_turns_into_flush_all(self) -> None:
        """Past notify_max_pending distinct keys the others are told to flush."""
        notifier = self._notifier(notify_max_pending=3)
        for i in range(5):
            notifier.enqueue(str(i), i + 1)
        payload, _ = notifier._next_payload()
        assert json.loads(payload)[1] == 0
