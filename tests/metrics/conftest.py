"""Fixtures: a real Pushgateway and a Prometheus scraping it (honor_labels), each on a free loopback port."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from promstack import (
    PROMETHEUS,
    PUSHGATEWAY,
    Service,
    free_port,
    prometheus_config,
    require_binary,
    start_service,
    stop_service,
)


@pytest.fixture
def pushgateway(tmp_path: Path):
    require_binary(PUSHGATEWAY)
    port = free_port()
    service = start_service(
        [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"],
        port=port,
        log=tmp_path / "pushgateway.log",
        ready_path="/-/ready",
    )
    yield service
    stop_service(service)


@pytest.fixture
def prometheus(tmp_path: Path, pushgateway: Service):
    require_binary(PROMETHEUS)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(pushgateway.address))
    service = start_service(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        port=port,
        log=tmp_path / "prometheus.log",
        ready_path="/-/ready",
    )
    wait_for_first_scrape(service)
    yield service
    stop_service(service)


def wait_for_first_scrape(service: Service, *, timeout_s: float = 30.0) -> None:
    """Ready is not scraping: wait until the Pushgateway target has been scraped once (``up`` exists),
    so a short workload started right after the fixture is observed from its first push on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{service.url}/api/v1/query?query=up", timeout=5) as response:
            if json.loads(response.read())["data"]["result"]:
                return
        time.sleep(0.1)
    raise TimeoutError(f"Prometheus at {service.url} did not scrape the Pushgateway within {timeout_s} s")
