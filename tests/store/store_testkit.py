"""Helpers shared by the store tests: loopback S3 clients, a killable TCP proxy, tree read/write."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import urllib3
from minio import Minio

from hybridmi.store import RetryPolicy

FAST_RETRY = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
TEST_KEY, TEST_SECRET = "hybridmi-test-access", "hybridmi-test-secret-do-not-leak"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def make_client(endpoint: str, access_key: str = TEST_KEY, secret_key: str = TEST_SECRET) -> Minio:
    """A client without urllib3-level retries, so that the store's RetryPolicy is the only retry loop."""
    return Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=False,
        http_client=urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10)),
    )


class TcpProxy:
    """127.0.0.1:port -> 127.0.0.1:target. ``stop`` refuses new connections and cuts open ones; ``rate_bps``
    throttles each direction of each connection to about that many bytes per second."""

    def __init__(self, target_port: int, *, rate_bps: float | None = None) -> None:
        self.target_port, self.port, self.rate_bps = target_port, free_port(), rate_bps
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._running = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self._running.set()
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        self._running.clear()
        if self._listener is not None:
            self._acceptor.join()  # within the accept timeout: then the port is free for a restart
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, self.rate_bps), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, rate_bps: float | None) -> None:
        try:
            while data := src.recv(16384 if rate_bps else 65536):
                dst.sendall(data)
                if rate_bps:
                    time.sleep(len(data) / rate_bps)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class SilentServer:
    """127.0.0.1:port accepts TCP connections and never answers (an endpoint that hangs)."""

    def __init__(self) -> None:
        self.port, self._held = free_port(), []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self._held.append(self._listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        self._listener.close()
        for conn in self._held:
            conn.close()


def start_auth_moto(log_path: Path) -> tuple[subprocess.Popen, str, str, str, str]:
    """A moto_server subprocess enforcing IAM auth, with one user allowed s3:*:
    (process, endpoint host:port, access key, secret key, bucket). The caller terminates the process."""
    import boto3  # moto's own dependency; used only to provision IAM users in the test server

    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_PORT": str(port)},
        )
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        kw = dict(
            endpoint_url=url, region_name="us-east-1", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap"
        )
        iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
        iam.create_user(UserName="pipeline")
        iam.put_user_policy(
            UserName="pipeline",
            PolicyName="s3",
            PolicyDocument=(
                '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
            ),
        )
        key = iam.create_access_key(UserName="pipeline")["AccessKey"]
        s3.create_bucket(Bucket="authbucket")
        urllib.request.urlopen(
            urllib.request.Request(
                f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
            )
        ).read()
    except BaseException:
        proc.terminate()
        raise
    return proc, f"127.0.0.1:{port}", key["AccessKeyId"], key["SecretAccessKey"], "authbucket"


@pytest.fixture(scope="module")
def auth_moto(tmp_path_factory):
    """A moto_server subprocess that enforces IAM auth: (endpoint, access key, secret key, bucket)."""
    proc, *server = start_auth_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield tuple(server)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
