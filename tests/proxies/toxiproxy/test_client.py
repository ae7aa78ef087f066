"""proxies.toxiproxy.client: the HTTP API client and its errors."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from support.toxiproxy_fixtures import EchoServer, unreachable_url
from support.toxiproxy_standin import ToxiproxyStandIn

from proxies.errors import (
    PortConflictError,
    ProxyConfigError,
    ProxyError,
    ToxiproxyUnreachableError,
    UnknownProxyError,
    UpstreamUnreachableError,
)
from proxies.toxiproxy.client import ToxiproxyClient, available


class TestAvailable:
    """available() tells mode auto whether a Toxiproxy API answers."""

    def test_available_probes(self, toxiproxy: ToxiproxyStandIn) -> None:
        """available() is True when the API answers and False, quickly, otherwise."""
        assert available(toxiproxy.url) is True
        assert available(unreachable_url(), timeout_s=0.2) is False


class TestClientErrors:
    """Every failure of the HTTP API is a precise ProxyError saying what and how to fix."""

    def test_unreachable_names_url_and_remedy(self) -> None:
        """An unreachable API says where it looked and how to start or avoid Toxiproxy."""
        url = unreachable_url()
        with pytest.raises(ToxiproxyUnreachableError) as caught:
            ToxiproxyClient(url, timeout_s=0.5).version()
        text = str(caught.value)
        assert url in text and "docker compose" in text and "inprocess" in text

    def test_unknown_proxy_lists_known_ones(self, toxiproxy: ToxiproxyStandIn,
                                            echo_server: EchoServer) -> None:
        """An unknown proxy name is reported with the names Toxiproxy has."""
        client = ToxiproxyClient(toxiproxy.url)
        client.create_proxy("known", "127.0.0.1:0", echo_server.upstream)
        with pytest.raises(UnknownProxyError) as caught:
            client.add_toxic("nope", name="t", type="latency")
        assert "'nope'" in str(caught.value) and "known" in str(caught.value)

    def test_port_conflict_says_what_and_how(self, toxiproxy: ToxiproxyStandIn,
                                             echo_server: EchoServer) -> None:
        """A taken listen port raises PortConflictError naming the address and remedies."""
        client = ToxiproxyClient(toxiproxy.url)
        with socket.create_server(("127.0.0.1", 0)) as taken:
            listen = f"127.0.0.1:{taken.getsockname()[1]}"
            with pytest.raises(PortConflictError) as caught:
                client.create_proxy("p", listen, echo_server.upstream)
        text = str(caught.value)
        assert listen in text and "'p'" in text and "choose another port" in text

    @pytest.mark.parametrize("url", ["127.0.0.1:8474", "ftp://x", "http://", 8474])
    def test_bad_url_is_rejected_before_io(self, url: Any) -> None:
        """A malformed URL is a ProxyConfigError at construction."""
        with pytest.raises(ProxyConfigError):
            ToxiproxyClient(url)

    def test_errors_share_one_root(self) -> None:
        """Every error of the package is a ProxyError."""
        for cls in (ProxyConfigError, ToxiproxyUnreachableError, UnknownProxyError,
                    PortConflictError, UpstreamUnreachableError):
            assert issubclass(cls, ProxyError)
