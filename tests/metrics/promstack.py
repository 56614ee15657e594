"""Starting real Prometheus and Pushgateway (Debian packages) on free loopback ports, for the tests.

A missing binary skips the test only when the CI variable is unset; in CI it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
SCRAPE_INTERVAL = "250ms"  # several scrapes per training step even on a fast machine
K8S_PROMETHEUS_CONFIG = Path(__file__).resolve().parents[2] / "k8s" / "monitoring" / "prometheus" / "prometheus.yml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_binary(path: str) -> None:
    if os.access(path, os.X_OK):
        return
    message = f"{path} is not installed (scripts/services.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def http_get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


@dataclass
class Service:
    address: str  # host:port
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def start_service(cmd: list[str], *, port: int, log: Path, ready_path: str, timeout_s: float = 30.0) -> Service:
    with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    service = Service(f"127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            http_get(service.url + ready_path, timeout=0.5)
            return service
        except OSError:
            time.sleep(0.1)
    stop_service(service)
    raise RuntimeError(f"{cmd[0]} did not become ready on port {port}: {log.read_text()[-2000:]}")


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()


def prometheus_config(pushgateway_address: str) -> str:
    """The shipped k8s scrape config's Pushgateway job (honor_labels and all), pointed at the test gateway, fast interval."""
    shipped = yaml.safe_load(K8S_PROMETHEUS_CONFIG.read_text())
    job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "pushgateway")
    job["static_configs"] = [{"targets": [pushgateway_address]}]
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [job],
    }
    return yaml.safe_dump(config)
