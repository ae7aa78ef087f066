"""Passwords never leave the process: every output path runs its text through :func:`redact`.

The servers' addresses carry passwords (``postgresql://user:password@host/db``,
``redis://:password@host``), and addresses end up in messages, events and metadata. The
console (the runner's lines, the command line's errors and ``services`` output), the structlog
events of the parent and the workers, the ``runs`` table, recorded error texts, the workers'
spec copies and the HTML report all pass through here, so a password is replaced by ``***``
wherever it would have been written.

Two ways, both applied to every text:

* Known passwords. :func:`learn_secrets` is told every address and workload a process is given
  (``POSTGRES_DSN``, ``VALKEY_URL``, a worker's spec, a workload's data) and remembers the
  passwords they hold, parsed as the whole value they are (so a raw password may hold any
  printable character: ``/``, ``#``, ``@``, quotes...). Each is then masked wherever it
  appears, as given, percent-decoded and in each encoding an output may give it (percent-,
  JSON-, YAML- or libpq-escaped): a password with punctuation breaks every pattern below (and
  the drivers' own parsers, whose messages then quote pieces of it), never this.
* Patterns, for passwords no one told this process of: the password of a URL's user
  information (``scheme://user:password@``, up to the last ``@`` of the authority), and the
  value of any key whose name ends in ``password``, ``passwd`` or ``pwd`` written as
  ``key=value`` (libpq keyword DSNs, URL query parameters) or ``key: value`` (YAML, JSON, a
  workload's backend options).

A user name alone is kept.
"""

from __future__ import annotations

import html
import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from orchestrator.errors import UsageError

MASK = "***"
# A known password shorter than this is left to the patterns: masking two or three characters
# everywhere would garble every output and hide nothing a guess would not find.
MIN_KNOWN = 4

# scheme://userinfo@ -- userinfo is everything up to the authority's last "@" (a password may
# hold "@"), never across "/", "?", "#", quotes, brackets or whitespace.
_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s\"'<>\[\]{}]*)@")
_SECRET_KEY = r"\b\w*(?:password|passwd|pwd)"
# A libpq value may be single-quoted with backslash escapes; YAML doubles a quote inside quotes.
_PAIR = re.compile(
    rf"(?i)(?P<key>{_SECRET_KEY}\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;,'\"]+)")
_YAML_PAIR = re.compile(
    rf"(?i)(?P<key>{_SECRET_KEY}[\"']?\s*:[ \t]*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*'"
    rf"|[^\s,{{}}\[\]#\"']+)")
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_KEY_NAME = re.compile(rf"(?i){_SECRET_KEY}\Z")


def _user_only(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}{':' + MASK if colon else ''}@"


# Every form of every password this process was told of, and one pattern matching any of them
# (longest first, so that a form is never masked only in part).
_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None


def _forms(secret: str) -> set[str]:
    """``secret`` as given, percent-decoded, and as each output may encode it."""
    forms = set()
    for plain in {secret, urllib.parse.unquote(secret), urllib.parse.unquote_plus(secret)}:
        forms.update({plain, urllib.parse.quote(plain, safe=""), urllib.parse.quote(plain),
                      urllib.parse.quote_plus(plain), json.dumps(plain)[1:-1],
                      plain.replace("'", "''"),  # YAML single-quoted, SQL
                      plain.replace("\\", "\\\\").replace("'", "\\'"),  # libpq quoted
                      html.escape(plain), html.escape(plain, quote=False)})
    return {form for form in forms if len(form) >= MIN_KNOWN}


def _unquote_pair(value: str) -> str:
    """A ``key=value`` value as libpq reads it (quotes and backslash escapes removed)."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def secrets_of(value: str) -> Iterator[str]:
    """The passwords in ``value``, read as one whole address: a URL's (its user information
    runs to the value's last ``@``, so that a raw password may hold ``/``, ``#`` or ``@``) and
    those of password-named ``key=value`` pairs (libpq keyword DSNs, URL query parameters)."""
    text = value.strip()
    start = _URL_START.match(text)
    if start:
        userinfo = text[start.end():].rpartition("@")[0]
        _, colon, password = userinfo.partition(":")
        if colon and password:
            yield password
    for match in _PAIR.finditer(text):
        yield _unquote_pair(match["value"])
        yield match["value"]


def learn_secrets(*values: Any) -> None:
    """Remember the passwords in ``values`` (addresses, workload data: strings, mappings,
    lists; a mapping's password-named keys give theirs), so that :func:`redact` masks them
    in every form, in any text, from now on in this process."""
    global _known_pattern
    found: set[str] = set()
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            for secret in secrets_of(value):
                found |= _forms(secret)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and _KEY_NAME.search(key) and isinstance(item, str):
                    found |= _forms(item)
                stack.append(item)
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif hasattr(value, "__dataclass_fields__"):
            stack.extend(getattr(value, name) for name in value.__dataclass_fields__)
    if found - _known:
        _known.update(found)
        # Not inside a longer word: a password "postgres" must not make "postgres-cache" (a
        # backend's name) "***-cache" in every output.
        _known_pattern = re.compile(r"(?<![\w.-])(?:" + "|".join(
            re.escape(form) for form in sorted(_known, key=len, reverse=True)) + r")(?![\w.-])")


# The variables that name the servers (see orchestrator.services.selection).
SERVER_VARIABLES = ("POSTGRES_DSN", "VALKEY_URL")


# What a URL's user information may hold as it is (RFC 3986's unreserved characters,
# sub-delimiters, ":" and percent-escapes; "@" too, since the user information runs to the
# authority's last "@"): a password with any other character must be percent-encoded.
_USERINFO = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*")


def learn_environment() -> None:
    """Remember the passwords of the servers named by the environment."""
    learn_secrets(*(os.environ.get(name, "") for name in SERVER_VARIABLES))


def check_environment() -> None:
    """Refuse (UsageError) a server address whose password a URL cannot carry as it is.

    Such a password is cut by every URL parser at its "/", "#", "?" or "%", and the drivers'
    messages then quote the pieces (as a port, a host...): no pattern finds those. So it is
    refused before anything connects, and without being quoted.
    """
    raw = [name for name in SERVER_VARIABLES if _unencoded(os.environ.get(name, ""))]
    if raw:
        raise UsageError(
            f"{' and '.join(raw)}: the password holds characters a URL cannot carry as they "
            "are (such as / # ? % [ ] \\ \" or a space); percent-encode it, e.g. with "
            "python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], "
            "safe=\"\"))' PASSWORD")


def _unencoded(value: str) -> bool:
    """Whether ``value`` is a URL whose user information is not percent-encoded as it must."""
    text = value.strip()
    start = _URL_START.match(text)
    if not start:
        return False
    userinfo = text[start.end():].rpartition("@")[0]
    return ":" in userinfo and not _USERINFO.fullmatch(userinfo)


def redact(text: str) -> str:
    """``text`` with every password it holds replaced by ``***``."""
    if _known_pattern is not None:
        text = _known_pattern.sub(MASK, text)
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
