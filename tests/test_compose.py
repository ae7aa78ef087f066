"""compose.yaml and proxies/toxiproxy.json, checked statically (no Docker engine here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from support.repo import ROOT

from orchestrator.services import COMPOSE_POSTGRES_DSN, COMPOSE_VALKEY_URL
from proxies import PROXY_NAMES
from proxies.routes import url_address
from proxies.toxiproxy import DEFAULT_URL

COMPOSE = ROOT / "compose.yaml"
PROXIES = ROOT / "proxies" / "toxiproxy.json"
CONFIG_IN_CONTAINER = "/config/toxiproxy.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def proxies() -> list[dict[str, Any]]:
    data = json.loads(PROXIES.read_text())
    assert isinstance(data, list)
    return data


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """Container port -> (host ip, host port) of a service's short-syntax port mappings."""
    result = {}
    for entry in service.get("ports", []):
        match = re.fullmatch(r"(?:([\d.]+):)?(\d+):(\d+)", str(entry))
        assert match, f"unexpected port syntax {entry!r}"
        result[int(match[3])] = (match[1] or "0.0.0.0", int(match[2]))
    return result


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    return list(test[1:])


class TestComposeServices:
    def test_three_services_with_pinned_major_images(self, compose: dict[str, Any]) -> None:
        """postgres:18, valkey/valkey:9 and a pinned ghcr.io/shopify/toxiproxy."""
        services = compose["services"]
        assert set(services) == {"postgres", "valkey", "toxiproxy"}
        assert services["postgres"]["image"] == "postgres:18"
        assert services["valkey"]["image"] == "valkey/valkey:9"
        assert re.fullmatch(r"ghcr\.io/shopify/toxiproxy:2\.\d+\.\d+",
                            services["toxiproxy"]["image"])

    def test_postgres_credentials_match_the_documented_dsn(self,
                                                           compose: dict[str, Any]) -> None:
        """User, password, database and host port agree with COMPOSE_POSTGRES_DSN."""
        service = compose["services"]["postgres"]
        env = service["environment"]
        assert env == {"POSTGRES_USER": "cache_user", "POSTGRES_PASSWORD": "cache_pass",
                       "POSTGRES_DB": "cache_proto"}
        expected = (f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@localhost:"
                    f"{published(service)[5432][1]}/{env['POSTGRES_DB']}")
        assert expected == COMPOSE_POSTGRES_DSN
        assert published(service)[5432] == ("127.0.0.1", 15432)

    def test_valkey_port_matches_the_documented_url(self, compose: dict[str, Any]) -> None:
        """Valkey is published on the port of COMPOSE_VALKEY_URL."""
        assert published(compose["services"]["valkey"])[6379] == (
            "127.0.0.1", url_address(COMPOSE_VALKEY_URL)[1])

    def test_every_service_has_a_healthcheck(self, compose: dict[str, Any]) -> None:
        """pg_isready, valkey-cli ping and toxiproxy-cli list check each service."""
        services = compose["services"]
        assert "pg_isready" in " ".join(healthcheck_command(services["postgres"]))
        assert healthcheck_command(services["valkey"]) == ["valkey-cli", "ping"]
        assert healthcheck_command(services["toxiproxy"]) == ["/toxiproxy-cli", "list"]
        for service in services.values():
            assert service["healthcheck"]["retries"] >= 10

    def test_toxiproxy_waits_for_healthy_upstreams(self, compose: dict[str, Any]) -> None:
        """Toxiproxy starts once PostgreSQL and Valkey are healthy."""
        depends = compose["services"]["toxiproxy"]["depends_on"]
        assert depends == {"postgres": {"condition": "service_healthy"},
                           "valkey": {"condition": "service_healthy"}}

    def test_toxiproxy_loads_the_mounted_config_and_publishes_its_api(
            self, compose: dict[str, Any]) -> None:
        """The -config file is proxies/toxiproxy.json, mounted read-only; 8474 is published."""
        service = compose["services"]["toxiproxy"]
        assert "-host=0.0.0.0" in service["command"]
        assert f"-config={CONFIG_IN_CONTAINER}" in service["command"]
        assert f"./proxies/toxiproxy.json:{CONFIG_IN_CONTAINER}:ro" in service["volumes"]
        assert published(service)[8474] == ("127.0.0.1", url_address(DEFAULT_URL)[1])

    def test_data_lives_in_named_volumes(self, compose: dict[str, Any]) -> None:
        """Data volumes are named and declared, so `down -v` removes them."""
        declared = set(compose["volumes"])
        assert declared == {"postgres-data", "valkey-data"}
        for name in ("postgres", "valkey"):
            for volume in compose["services"][name]["volumes"]:
                assert volume.split(":")[0] in declared


class TestToxiproxyConfig:
    def test_the_runs_proxies_are_configured_and_enabled(
            self, proxies: list[dict[str, Any]]) -> None:
        """Each proxy the run needs is present, enabled, with exactly the documented fields."""
        assert sorted(p["name"] for p in proxies) == sorted(PROXY_NAMES)
        for proxy in proxies:
            assert set(proxy) == {"name", "listen", "upstream", "enabled"}
            assert proxy["enabled"] is True

    def test_upstreams_name_a_compose_service_and_its_port(
            self, compose: dict[str, Any], proxies: list[dict[str, Any]]) -> None:
        """Every upstream is <compose service>:<the port that service's image listens on>."""
        container_ports = {name: set(published(service))
                           for name, service in compose["services"].items()}
        for proxy in proxies:
            host, port = url_address(f"tcp://{proxy['upstream']}")
            assert host in compose["services"] and host != "toxiproxy", proxy
            assert port in container_ports[host], proxy

    def test_listen_ports_are_published_by_toxiproxy(
            self, compose: dict[str, Any], proxies: list[dict[str, Any]]) -> None:
        """Each proxy listens on all container interfaces on a port published 1:1 on the host."""
        ports = published(compose["services"]["toxiproxy"])
        listens = [url_address(f"tcp://{p['listen']}") for p in proxies]
        assert len({port for _, port in listens}) == len(listens)
        for host, port in listens:
            assert host == "0.0.0.0"
            assert ports[port] == ("127.0.0.1", port)


class TestDockerCompose:
    def test_compose_config_is_valid(self) -> None:
        """`docker compose config -q` accepts the file (client only, no engine needed)."""
        docker = shutil.which("docker")
        if docker is None:
            pytest.skip("no docker client on this machine")
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                               timeout=30, check=False)
        if probe.returncode != 0:
            pytest.skip("the docker client here has no compose plugin: "
                        + (probe.stderr or probe.stdout).strip().splitlines()[0])
        result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"],
                                capture_output=True, text=True, timeout=60, check=False,
                                cwd=ROOT)
        assert result.returncode == 0, result.stderr
