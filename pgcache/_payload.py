"""Notification payloads: how a write is announced, and how an announcement is read back.

A payload is ASCII JSON: ``[sender, seq, v1, k1, v2, k2, ...]``.

- ``sender`` is the writing instance's id, ``seq`` a number it gave this notification. The
  sender's own listener gets the payload back: that echo proves the notification path works
  end to end (see ``_lease``); every other instance ignores ``seq``.
- ``v > 0``: key ``k`` was written (or deleted) at version ``v``.
- ``v < 0``: the same for a long key, named by its hash in hex (``_keys.key_digest``), because
  a key may be longer than the 8000-byte payload limit.
- ``v == 0``: every instance must flush its local cache (after a truncate).
- ``v > 0`` with ``null`` for the key: every key changed at ``v`` (the table was trimmed of
  every row written before ``v``): copies older than ``v`` go.

A payload with no items (``[sender, seq]``) is a heartbeat: only its echo matters.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from ._keys import LONG_KEY_CHARS, key_digest

FLUSH_ALL = 0


class Notice(NamedTuple):
    """A decoded payload: its sender, its number and its flat ``[v1, k1, ...]``."""

    sender: str
    items: list[Any]
    seq: int = 0


# What a payload that is not pgcache's becomes when it must travel as a Notice: no items to
# apply; ``items`` carries the raw payload for the log.
FOREIGN = Notice("", [], -1)


def header(sender: str, seq: int) -> str:
    """The opening of every payload ``sender`` sends with number ``seq``."""
    return f'["{sender}",{seq}'


def own_prefix(sender: str) -> str:
    """What every payload of ``sender`` starts with (recognised before any parsing)."""
    return f'["{sender}",'


# A seq is at most a bigint's 19 digits; anything longer is not ours (and int() of a
# 5000-digit string would raise).
_DIGITS = re.compile(r"[0-9]{1,19}(?![0-9])")


def own_seq(payload: str, prefix: str) -> int | None:
    """The ``seq`` of a payload that starts with ``prefix`` (an echo of our own), or None.
    (Every write's echo is read here: one regex match, not a loop over characters.)"""
    digits = _DIGITS.match(payload, len(prefix))
    return int(digits.group()) if digits is not None else None


def name(key: str) -> tuple[str, int]:
    """How ``key`` appears in a payload (JSON text) and the sign its version takes there."""
    if len(key) > LONG_KEY_CHARS:
        return f'"{key_digest(key)}"', -1
    return encode_basestring_ascii(key), 1


def inline_parts(sender: str, seq: int, key: str) -> tuple[str, str]:
    """A one-key payload around its version: a statement sends ``head || version || tail``,
    so the version it writes is announced in its own transaction."""
    text, sign = name(key)
    return header(sender, seq) + (",-" if sign < 0 else ","), f",{text}]"


def heartbeat(sender: str, seq: int) -> str:
    return header(sender, seq) + "]"


def flush_all(sender: str, seq: int) -> str:
    return header(sender, seq) + f',{FLUSH_ALL},""]'


def decode(payload: str) -> Notice | None:
    """A payload of another pgcache instance, or None if it is not one (foreign, corrupt).
    Never raises, whatever another program NOTIFYs; its items are checked where applied."""
    try:
        items = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the stack allows
        return None
    if not isinstance(items, list) or len(items) < 2 or len(items) % 2:
        return None
    sender, seq = items[0], items[1]
    if not isinstance(sender, str) or type(seq) is not int:
        return None
    return Notice(sender, items[2:], seq)
