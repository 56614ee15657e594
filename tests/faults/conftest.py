"""The fault matrix: real `hybridmi` processes against real loopback services (moto S3, a cuttable TCP proxy,
an auth-enforcing moto server, a Pushgateway stand-in on a closed port), each case as an operator would meet it.

Every test here is marked ``faults``; the table of cases and what held is in README.md ("Object storage
and faults"). Helpers live in faultkit.py (a conftest is not importable by name: every test folder has one).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from faultkit import base_env, run, stage
from store_testkit import TcpProxy, auth_moto, make_client  # noqa: F401 (auth_moto: a fixture)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/faults/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def bucket(moto_endpoint) -> str:
    name = f"faults-{uuid.uuid4().hex[:12]}"
    make_client(moto_endpoint).make_bucket(name)
    return name


@pytest.fixture
def proxy(moto_endpoint):
    proxy = TcpProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return base_env(tmp_path)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A prepared TINY data set directory (made once by the CLI)."""
    root = tmp_path_factory.mktemp("tiny-dataset")
    done = run(
        stage("prepare", overrides=[f"data.cache_dir={root / 'cache'}"], outputs={"dataset": root / "ds"}),
        base_env(root),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "ds"
