"""Passwords never leave the process: every output path runs its text through :func:`redact`.

The servers' addresses carry passwords (``postgresql://user:password@host/db``,
``redis://:password@host``), and addresses end up in messages, events and metadata. The
console (the runner's lines, the command line's errors and ``services`` output), the structlog
events of the parent and the workers, the ``runs`` table, recorded error texts, the workers'
spec copies and the HTML report all pass through here, so a password is replaced by ``***``
wherever it would have been written.

What is recognised: the password of a URL's user information (``scheme://user:password@``, up
to the last ``@`` of the authority), and the value of any key whose name ends in ``password``,
``passwd`` or ``pwd`` written as ``key=value`` (libpq keyword DSNs, URL query parameters) or
``key: value`` (YAML, JSON, a workload's backend options). A user name alone is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# scheme://userinfo@ -- userinfo is everything up to the authority's last "@" (a password may
# hold "@"), never across "/", "?", "#", quotes, brackets or whitespace.
_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s\"'<>\[\]{}]*)@")
_SECRET_KEY = r"\b\w*(?:password|passwd|pwd)"
_PAIR = re.compile(rf"(?i)(?P<key>{_SECRET_KEY}\s*=\s*)(?P<value>'[^']*'|[^\s&;,'\"]+)")
_YAML_PAIR = re.compile(
    rf"(?i)(?P<key>{_SECRET_KEY}[\"']?\s*:[ \t]*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'"
    rf"|[^\s,{{}}\[\]#\"']+)")
_KEY_NAME = re.compile(rf"(?i){_SECRET_KEY}\Z")


def _user_only(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}{':' + MASK if colon else ''}@"


def redact(text: str) -> str:
    """``text`` with every password it holds replaced by ``***``."""
    if "@" not in text and "=" not in text and ":" not in text:
        return text  # the common case, and the cheap one
    text = _URL.sub(_user_only, text)
    text = _PAIR.sub(lambda m: f"{m['key']}{MASK}", text)
    return _YAML_PAIR.sub(lambda m: f"{m['key']}{MASK}", text)


def redact_data(value: Any) -> Any:
    """``value`` (strings, mappings, lists, tuples, nested) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: MASK if isinstance(key, str) and _KEY_NAME.search(key) and item is not None
                else redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_data(item) for item in value)
    return value
