"""Tests for the RESP3 connection the valkey-tracking backend speaks, against the embedded
Valkey and by parsing bytes."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.backends.resp import (
    INCOMPLETE,
    ConnectionLost,
    Push,
    ReplyError,
    RespParser,
    encode,
    open_connection,
    parse_url,
)

STREAM = (b"+OK\r\n$5\r\nhello\r\n$-1\r\n_\r\n:42\r\n-ERR wrong\r\n*2\r\n$1\r\na\r\n:1\r\n"
          b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n%1\r\n$2\r\nid\r\n:7\r\n#t\r\n"
          b",1.5\r\n(12345678901234567890\r\n=8\r\ntxt:some\r\n~1\r\n:3\r\n"
          b"|1\r\n$3\r\nttl\r\n:3\r\n$1\r\nv\r\n!5\r\nOOPS!\r\n")
EXPECTED = [b"OK", b"hello", None, None, 42, "ERR wrong", [b"a", 1],
            Push([b"invalidate", [b"key"]]), {b"id": 7}, True, 1.5, 12345678901234567890,
            b"some", [3], b"v", "OOPS!"]


def parse_all(parser: RespParser) -> list[object]:
    out = []
    while (reply := parser.get()) is not INCOMPLETE:
        out.append(str(reply) if isinstance(reply, ReplyError) else reply)
    return out


class TestParser:
    """Every RESP3 type is read, however the bytes are split."""

    def test_every_type(self) -> None:
        """A stream of each reply type parses to the expected Python values."""
        parser = RespParser()
        parser.feed(STREAM)
        replies = parse_all(parser)
        assert replies == EXPECTED
        assert type(replies[7]) is Push

    @given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
    def test_any_split(self, cuts: list[int]) -> None:
        """Fed in arbitrary pieces, the stream yields the same replies in the same order."""
        parser = RespParser()
        replies: list[object] = []
        bounds = [0, *sorted(cuts), len(STREAM)]
        for start, stop in itertools.pairwise(bounds):
            parser.feed(STREAM[start:stop])
            replies += parse_all(parser)
            parser.compact()
        assert replies == EXPECTED

    def test_encode_and_url(self) -> None:
        """Commands are arrays of bulk strings; URLs give host, port, db and credentials."""
        assert encode("SET", "k", b"v", "PX", 5) == (
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n5\r\n")
        address = parse_url("redis://u:p%40ss@h:1234/3")
        assert (address.host, address.port, address.db, address.username,
                address.password) == ("h", 1234, 3, "u", "p@ss")
        with pytest.raises(ValueError, match="redis://"):
            parse_url("http://h")


class TestConnection:
    """Pipelined commands against the real server."""

    async def test_pipelined_replies_in_order(self, valkey_url: str) -> None:
        """Hundreds of concurrent commands each get their own reply; errors stay their own."""
        conn, _ = await open_connection(parse_url(valkey_url), connect_timeout=5)
        try:
            keys = [f"resp:{i}" for i in range(300)]
            await asyncio.gather(*(conn.call("SET", k, k.upper()) for k in keys))
            values = await asyncio.gather(*(conn.call("GET", k) for k in keys))
            assert values == [k.upper().encode() for k in keys]
            with pytest.raises(ReplyError, match="unknown command"):
                await conn.call("NO-SUCH-COMMAND")
            assert await conn.send_many(encode("MULTI") + encode("INCR", "resp:n")
                                        + encode("EXEC"), 3) == [b"OK", b"QUEUED", [1]]
        finally:
            await conn.close()

    async def test_lost_connection_fails_commands(self, valkey_url: str) -> None:
        """Commands in flight, and any sent later, fail with ConnectionLost."""
        lost: list[object] = []
        conn, _ = await open_connection(parse_url(valkey_url), connect_timeout=5,
                                        on_lost=lost.append)
        pending = conn.send(encode("BLPOP", "resp:never", 5))
        conn.abort()
        with pytest.raises(ConnectionLost):
            await pending
        with pytest.raises(ConnectionLost):
            conn.send(encode("PING"))
        await conn.closed_event.wait()
        assert lost == [conn]
