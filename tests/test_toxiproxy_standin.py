"""The Toxiproxy test stand-in: its HTTP API, toxiproxy-python against it, and its toxics."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import toxiproxy as toxiproxy_python
from redis.backoff import NoBackoff
from redis.retry import Retry
from support.toxiproxy_fixtures import EchoServer, hostport
from support.toxiproxy_standin import ToxiproxyStandIn, wait_until
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists


def call(server: ToxiproxyStandIn, method: str, path: str, body: Any = None
         ) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes)
                                      else json.dumps(body).encode())
    request = urllib.request.Request(server.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    text = raw.decode()
    try:
        return status, json.loads(text) if text.strip() else None
    except ValueError:
        return status, text


def address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


class TestProxyRoutes:
    def test_version_answers_json(self, toxiproxy: ToxiproxyStandIn) -> None:
        """GET /version answers 200 with a JSON version, as Toxiproxy 2.6+ does."""
        status, body = call(toxiproxy, "GET", "/version")
        assert status == 200 and isinstance(body["version"], str)

    def test_create_returns_201_and_the_proxy(self, toxiproxy: ToxiproxyStandIn,
                                              echo_server: EchoServer) -> None:
        """POST /proxies creates an enabled proxy on an ephemeral port and answers 201."""
        status, body = call(toxiproxy, "POST", "/proxies",
                            {"name": "p", "listen": "127.0.0.1:0",
                             "upstream": echo_server.upstream})
        assert status == 201
        assert body["name"] == "p" and body["enabled"] is True and body["toxics"] == []
        assert body["upstream"] == echo_server.upstream
        assert address(body["listen"])[1] > 0
        status, index = call(toxiproxy, "GET", "/proxies")
        assert status == 200 and index["p"]["listen"] == body["listen"]

    def test_duplicate_missing_and_bad_body_errors(self, toxiproxy: ToxiproxyStandIn,
                                                   echo_server: EchoServer) -> None:
        """A taken name is 409, a missing field or malformed JSON is 400, all as error JSON."""
        proxy = {"name": "p", "listen": "127.0.0.1:0", "upstream": echo_server.upstream}
        assert call(toxiproxy, "POST", "/proxies", proxy)[0] == 201
        assert call(toxiproxy, "POST", "/proxies", proxy) == (
            409, {"error": "proxy already exists", "status": 409})
        assert call(toxiproxy, "POST", "/proxies", {"name": "q"}) == (
            400, {"error": "missing required field: upstream", "status": 400})
        status, body = call(toxiproxy, "POST", "/proxies", b"{not json")
        assert status == 400 and body["error"].startswith("bad request body")

    def test_unknown_proxy_is_404(self, toxiproxy: ToxiproxyStandIn) -> None:
        """Every /proxies/{proxy} route answers 404 "proxy not found" for an unknown name."""
        for method, path in (("GET", "/proxies/nope"), ("DELETE", "/proxies/nope"),
                             ("GET", "/proxies/nope/toxics"),
                             ("POST", "/proxies/nope/toxics")):
            body = {"type": "latency"} if method == "POST" else None
            assert call(toxiproxy, method, path, body) == (
                404, {"error": "proxy not found", "status": 404})

    def test_port_conflict_is_500_with_the_bind_error(self, toxiproxy: ToxiproxyStandIn,
                                                      echo_server: EchoServer) -> None:
        """Listening on a taken port fails like Go's net.Listen, and no proxy is created."""
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            status, body = call(toxiproxy, "POST", "/proxies",
                                {"name": "p", "listen": f"127.0.0.1:{port}",
                                 "upstream": echo_server.upstream})
        assert status == 500
        assert body == {"error": f"listen tcp 127.0.0.1:{port}: bind: address already in use",
                        "status": 500}
        assert call(toxiproxy, "GET", "/proxies") == (200, {})

    def test_update_disables_and_delete_removes(self, toxiproxy: ToxiproxyStandIn,
                                                echo_server: EchoServer) -> None:
        """POST /proxies/{proxy} toggles enabled (200); DELETE answers 204 and frees it."""
        _, proxy = call(toxiproxy, "POST", "/proxies",
                        {"name": "p", "listen": "127.0.0.1:0", "upstream": echo_server.upstream})
        status, body = call(toxiproxy, "POST", "/proxies/p", {"enabled": False})
        assert status == 200 and body["enabled"] is False
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address(proxy["listen"]), timeout=2)
        status, body = call(toxiproxy, "PATCH", "/proxies/p", {"enabled": True})
        assert status == 200 and body["enabled"] is True
        with socket.create_connection(address(proxy["listen"]), timeout=2) as sock:
            assert round_trip(sock) == b"ping"
        assert call(toxiproxy, "DELETE", "/proxies/p") == (204, None)
        assert call(toxiproxy, "GET", "/proxies/p")[0] == 404

    def test_populate_keeps_identical_and_replaces_changed(self, toxiproxy: ToxiproxyStandIn,
                                                           echo_server: EchoServer) -> None:
        """POST /populate answers 201 {"proxies": [...]}; same fields untouched, others replaced."""
        first = [{"name": "a", "listen": "127.0.0.1:0", "upstream": echo_server.upstream}]
        status, body = call(toxiproxy, "POST", "/populate", first)
        assert status == 201 and [p["name"] for p in body["proxies"]] == ["a"]
        listen = body["proxies"][0]["listen"]
        again = [{"name": "a", "listen": listen, "upstream": echo_server.upstream}]
        assert call(toxiproxy, "POST", "/populate", again)[1]["proxies"][0]["listen"] == listen
        moved = [{"name": "a", "listen": listen, "upstream": "127.0.0.1:1"}]
        assert call(toxiproxy, "POST", "/populate", moved)[1]["proxies"][0]["upstream"] == \
            "127.0.0.1:1"
        status, body = call(toxiproxy, "POST", "/populate", [{"name": "b"}])
        assert status == 400 and body["error"] == "missing required field: upstream at proxy 1"

    def test_unknown_route_and_method(self, toxiproxy: ToxiproxyStandIn) -> None:
        """An unknown path is 404 and a wrong method 405, like gorilla/mux."""
        assert call(toxiproxy, "GET", "/nope")[0] == 404
        assert call(toxiproxy, "DELETE", "/version")[0] == 405


class TestToxicRoutes:
    @pytest.fixture
    def proxy(self, toxiproxy: ToxiproxyStandIn, echo_server: EchoServer) -> dict[str, Any]:
        return call(toxiproxy, "POST", "/proxies",
                    {"name": "p", "listen": "127.0.0.1:0", "upstream": echo_server.upstream})[1]

    def test_create_fills_defaults(self, toxiproxy: ToxiproxyStandIn,
                                   proxy: dict[str, Any]) -> None:
        """A toxic defaults to downstream, toxicity 1, name <type>_<stream>, all attributes."""
        status, body = call(toxiproxy, "POST", "/proxies/p/toxics",
                            {"type": "latency", "attributes": {"latency": 5}})
        assert status == 200
        assert body == {"name": "latency_downstream", "type": "latency", "stream": "downstream",
                        "toxicity": 1.0, "attributes": {"latency": 5, "jitter": 0}}
        assert call(toxiproxy, "GET", "/proxies/p/toxics") == (200, [body])
        assert call(toxiproxy, "GET", "/proxies/p")[1]["toxics"] == [body]

    def test_invalid_toxics_are_rejected(self, toxiproxy: ToxiproxyStandIn,
                                         proxy: dict[str, Any]) -> None:
        """Bad type, bad stream, fractional attribute (Go int64) are 400; a taken name is 409."""
        assert call(toxiproxy, "POST", "/proxies/p/toxics", {"type": "nope"}) == (
            400, {"error": "invalid toxic type", "status": 400})
        status, body = call(toxiproxy, "POST", "/proxies/p/toxics",
                            {"type": "latency", "stream": "sideways"})
        assert status == 400 and "stream was invalid" in body["error"]
        status, body = call(toxiproxy, "POST", "/proxies/p/toxics",
                            {"type": "latency", "attributes": {"latency": 0.75}})
        assert status == 400 and "int64" in body["error"]
        assert call(toxiproxy, "POST", "/proxies/p/toxics", {"type": "timeout"})[0] == 200
        assert call(toxiproxy, "POST", "/proxies/p/toxics", {"type": "timeout"}) == (
            409, {"error": "toxic already exists", "status": 409})

    def test_update_show_and_delete(self, toxiproxy: ToxiproxyStandIn,
                                    proxy: dict[str, Any]) -> None:
        """A toxic's attributes update in place; DELETE answers 204, then GET is 404."""
        call(toxiproxy, "POST", "/proxies/p/toxics", {"name": "t", "type": "bandwidth"})
        status, body = call(toxiproxy, "POST", "/proxies/p/toxics/t",
                            {"attributes": {"rate": 7}, "toxicity": 0.5})
        assert status == 200 and body["attributes"] == {"rate": 7} and body["toxicity"] == 0.5
        assert call(toxiproxy, "GET", "/proxies/p/toxics/t")[1] == body
        assert call(toxiproxy, "DELETE", "/proxies/p/toxics/t") == (204, None)
        assert call(toxiproxy, "GET", "/proxies/p/toxics/t") == (
            404, {"error": "toxic not found", "status": 404})

    def test_reset_enables_and_clears(self, toxiproxy: ToxiproxyStandIn,
                                      proxy: dict[str, Any]) -> None:
        """POST /reset answers 204, re-enables every proxy and removes every toxic."""
        call(toxiproxy, "POST", "/proxies/p/toxics", {"type": "timeout"})
        call(toxiproxy, "POST", "/proxies/p", {"enabled": False})
        assert call(toxiproxy, "POST", "/reset") == (204, None)
        body = call(toxiproxy, "GET", "/proxies/p")[1]
        assert body["enabled"] is True and body["toxics"] == []


@pytest.fixture
def python_client(toxiproxy: ToxiproxyStandIn) -> Iterator[toxiproxy_python.Toxiproxy]:
    # toxiproxy-python keeps the server address in class attributes: restore them afterwards.
    saved = (APIConsumer.host, APIConsumer.port)
    client = toxiproxy_python.Toxiproxy()
    client.update_api_consumer("127.0.0.1", toxiproxy.port)
    yield client
    APIConsumer.host, APIConsumer.port = saved


class TestToxiproxyPythonClient:
    def test_proxy_lifecycle(self, python_client: toxiproxy_python.Toxiproxy,
                             echo_server: EchoServer) -> None:
        """create, proxies, get_proxy, disable/enable, destroy all work against the stand-in."""
        assert python_client.running() is True
        assert b"version" in python_client.version()
        proxy = python_client.create(upstream=echo_server.upstream, name="p")
        assert set(python_client.proxies()) == {"p"}
        assert python_client.get_proxy("p").listen == proxy.listen
        with pytest.raises(ProxyExists):
            python_client.create(upstream=echo_server.upstream, name="p")
        proxy.disable()
        assert python_client.get_proxy("p").enabled is False
        proxy.enable()
        with socket.create_connection(address(proxy.listen), timeout=2) as sock:
            assert round_trip(sock) == b"ping"
        assert python_client.destroy(proxy) is True
        assert python_client.get_proxy("p") is None

    def test_toxics_populate_and_reset(self, python_client: toxiproxy_python.Toxiproxy,
                                       echo_server: EchoServer) -> None:
        """add_toxic/toxics/destroy_toxic, populate and reset work; errors map to its types."""
        [proxy] = python_client.populate(
            [{"name": "p", "listen": "127.0.0.1:0", "upstream": echo_server.upstream}])
        proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 1})
        toxics = proxy.toxics()
        assert set(toxics) == {"latency_upstream"}
        assert toxics["latency_upstream"].attributes == {"latency": 1, "jitter": 0}
        with pytest.raises(InvalidToxic):
            proxy.add_toxic(type="nope")
        assert proxy.destroy_toxic("latency_upstream") is True
        with pytest.raises(NotFound):
            proxy.destroy_toxic("latency_upstream")
        proxy.add_toxic(type="timeout")
        assert python_client.reset() is True
        assert proxy.toxics() == {}


class TestToxicBehaviour:
    @pytest.fixture
    def valkey_proxy(self, toxiproxy: ToxiproxyStandIn, valkey_url: str
                     ) -> tuple[str, redis.Redis]:
        _, body = call(toxiproxy, "POST", "/proxies",
                       {"name": "v", "listen": "127.0.0.1:0", "upstream": hostport(valkey_url)})
        host, port = address(body["listen"])
        client = redis.Redis(host=host, port=port, socket_timeout=0.5,
                             socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        assert client.ping()
        return "v", client

    def test_timeout_stalls_then_recovers_when_removed(
            self, toxiproxy: ToxiproxyStandIn, valkey_proxy: tuple[str, redis.Redis]) -> None:
        """With timeout 0 no answer comes back; once removed, a new connection works."""
        name, client = valkey_proxy
        call(toxiproxy, "POST", f"/proxies/{name}/toxics",
             {"name": "t", "type": "timeout", "attributes": {"timeout": 0}})
        with pytest.raises(redis.TimeoutError):
            client.ping()
        call(toxiproxy, "DELETE", f"/proxies/{name}/toxics/t")
        assert client.ping()

    def test_timeout_closes_after_its_delay(self, toxiproxy: ToxiproxyStandIn,
                                            echo_server: EchoServer) -> None:
        """A timeout toxic with a delay drops data, then closes the connection."""
        _, body = call(toxiproxy, "POST", "/proxies",
                       {"name": "p", "listen": "127.0.0.1:0", "upstream": echo_server.upstream})
        with socket.create_connection(address(body["listen"]), timeout=5) as sock:
            call(toxiproxy, "POST", "/proxies/p/toxics",
                 {"type": "timeout", "attributes": {"timeout": 100}})
            sock.sendall(b"lost")
            assert sock.recv(10) == b""

    def test_reset_peer_resets_the_connection(
            self, toxiproxy: ToxiproxyStandIn, valkey_proxy: tuple[str, redis.Redis]) -> None:
        """reset_peer makes the client see a connection reset; removed, traffic flows again."""
        name, client = valkey_proxy
        call(toxiproxy, "POST", f"/proxies/{name}/toxics",
             {"name": "r", "type": "reset_peer", "stream": "upstream",
              "attributes": {"timeout": 0}})
        with pytest.raises(redis.ConnectionError) as caught:
            client.ping()
        assert "reset" in str(caught.value).lower() or "closed" in str(caught.value).lower()
        call(toxiproxy, "DELETE", f"/proxies/{name}/toxics/r")
        assert client.ping()

    def test_reset_peer_sends_rst(self, toxiproxy: ToxiproxyStandIn,
                                  echo_server: EchoServer) -> None:
        """The stand-in closes with SO_LINGER 0, so a raw socket gets ECONNRESET."""
        _, body = call(toxiproxy, "POST", "/proxies",
                       {"name": "p", "listen": "127.0.0.1:0", "upstream": echo_server.upstream})
        call(toxiproxy, "POST", "/proxies/p/toxics",
             {"type": "reset_peer", "stream": "upstream", "attributes": {"timeout": 0}})
        with socket.create_connection(address(body["listen"]), timeout=5) as sock:
            sock.sendall(b"x")
            with pytest.raises(ConnectionResetError):
                sock.recv(10)

    def test_down_refuses_and_closes_then_recovers(
            self, toxiproxy: ToxiproxyStandIn, valkey_proxy: tuple[str, redis.Redis]) -> None:
        """Disabling closes existing connections and refuses new ones; enabling recovers."""
        name, client = valkey_proxy
        assert toxiproxy.connection_count(name) == 1
        call(toxiproxy, "POST", f"/proxies/{name}", {"enabled": False})
        assert wait_until(lambda: toxiproxy.connection_count(name) == 0)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        call(toxiproxy, "POST", f"/proxies/{name}", {"enabled": True})
        assert client.ping()

    def test_toxicity_zero_never_applies(
            self, toxiproxy: ToxiproxyStandIn, valkey_proxy: tuple[str, redis.Redis]) -> None:
        """A toxic with toxicity 0 leaves every connection untouched."""
        name, client = valkey_proxy
        call(toxiproxy, "POST", f"/proxies/{name}/toxics",
             {"type": "timeout", "toxicity": 0.0})
        assert client.ping()

    def test_slicer_bandwidth_and_limit_data(self, toxiproxy: ToxiproxyStandIn,
                                             echo_server: EchoServer) -> None:
        """Sliced and rate-limited data arrives intact; limit_data closes after its bytes."""
        _, body = call(toxiproxy, "POST", "/proxies",
                       {"name": "p", "listen": "127.0.0.1:0", "upstream": echo_server.upstream})
        call(toxiproxy, "POST", "/proxies/p/toxics",
             {"type": "slicer", "attributes": {"average_size": 10, "size_variation": 3,
                                               "delay": 100}})
        call(toxiproxy, "POST", "/proxies/p/toxics",
             {"type": "bandwidth", "stream": "upstream", "attributes": {"rate": 1000}})
        payload = bytes(range(256)) * 8
        with socket.create_connection(address(body["listen"]), timeout=5) as sock:
            assert round_trip(sock, payload) == payload
        call(toxiproxy, "POST", "/reset")
        call(toxiproxy, "POST", "/proxies/p/toxics",
             {"type": "limit_data", "attributes": {"bytes": 6}})
        with socket.create_connection(address(body["listen"]), timeout=5) as sock:
            sock.sendall(b"0123456789")
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(100):
                    received += chunk
        assert received == b"012345"
