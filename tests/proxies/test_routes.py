"""proxies.routes: the one route table, the endpoints and URL rewriting."""

from __future__ import annotations

from proxies.routes import (
    PROXY_NAMES,
    ROUTE_NAMES,
    ROUTES,
    Endpoints,
    proxy_name,
    url_address,
    with_address,
)


class TestTable:
    """Each route names its protocol, proxy and endpoint field, once."""

    def test_three_routes(self) -> None:
        """The pool, the pgcache listener and Valkey each have a route of their own."""
        assert ROUTE_NAMES == ("postgres", "postgres-listener", "valkey")
        assert PROXY_NAMES == ("pgcache-postgres", "pgcache-postgres-listener",
                               "pgcache-valkey")
        assert {r.protocol for r in ROUTES} == {"postgres", "valkey"}

    def test_proxy_name_resolves_route_names_only(self) -> None:
        """A route name becomes its proxy's name; any other name is a proxy name already."""
        assert proxy_name("postgres-listener") == "pgcache-postgres-listener"
        assert proxy_name("my-proxy") == "my-proxy"


class TestRewriting:
    """Only host and port change; credentials, database and query stay."""

    def test_with_address_keeps_credentials_and_path(self) -> None:
        """A DSN keeps its user, password, database and options; a URL its database."""
        assert with_address("postgresql://u:p@db:5432/x?sslmode=disable", ("127.0.0.1", 9)) == \
            "postgresql://u:p@127.0.0.1:9/x?sslmode=disable"
        assert with_address("redis://localhost:6379/0", ("h", 1)) == "redis://h:1/0"
        assert with_address("redis://h:1/0", ("::1", 2)) == "redis://[::1]:2/0"

    def test_url_address_defaults(self) -> None:
        """Default ports are 5432 for Postgres DSNs and 6379 for redis URLs."""
        assert url_address("postgresql://u@db/x") == ("db", 5432)
        assert url_address("redis://cache") == ("cache", 6379)

    def test_rerouted_changes_only_the_named_routes(self) -> None:
        """Each route named gets its address; the others keep theirs."""
        endpoints = Endpoints("postgresql://u:p@db/x", "redis://cache/0", "postgresql://u:p@db/x")
        routed = endpoints.rerouted({"postgres-listener": ("127.0.0.1", 7)})
        assert routed.postgres_listener_dsn == "postgresql://u:p@127.0.0.1:7/x"
        assert (routed.postgres_dsn, routed.valkey_url) == (endpoints.postgres_dsn,
                                                            endpoints.valkey_url)
        assert routed.url("postgres-listener") == routed.postgres_listener_dsn
