"""Suite-wide fixtures: one torch thread (small tensors gain nothing from more, and lose a lot on a busy
machine) and one in-process S3 endpoint (moto) on a free loopback port."""

import logging
import socket

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def moto_endpoint():
    """host:port of an in-process moto S3 server; its state is global to the process, so use a bucket per test."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()
