"""Fixtures: a real Pushgateway and a Prometheus scraping it (honor_labels), each on a free loopback port."""
from __future__ import annotations

from pathlib import Path

import pytest
from promstack import (PROMETHEUS, PUSHGATEWAY, Service, free_port, prometheus_config, require_binary, start_service,
                       stop_service)


@pytest.fixture
def pushgateway(tmp_path: Path):
    require_binary(PUSHGATEWAY)
    port = free_port()
    service = start_service([PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"],
                            port=port, log=tmp_path / "pushgateway.log", ready_path="/-/ready")
    yield service
    stop_service(service)


@pytest.fixture
def prometheus(tmp_path: Path, pushgateway: Service):
    require_binary(PROMETHEUS)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(pushgateway.address))
    service = start_service(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        port=port, log=tmp_path / "prometheus.log", ready_path="/-/ready",
    )
    yield service
    stop_service(service)
