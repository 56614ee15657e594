"""Secrets given to a run appear in no file it writes: not in its outputs, logs, checkpoints or the objects
it publishes. The Pushgateway takes its credentials from the environment (basic auth), never from the URL."""

from __future__ import annotations

import base64
import http.server
import threading
from pathlib import Path

from faultkit import TINY, hybridmi_cmd, run, s3_env, sets
from store_testkit import TEST_KEY, make_client

GATEWAY_USER, GATEWAY_PASSWORD = "gw-user", "gw-pass-5ecret-71c9"
S3_SECRET = "s3-5ecret-key-2f0a"  # moto accepts any secret key


class AuthGateway(http.server.ThreadingHTTPServer):
    """A loopback Pushgateway stand-in that answers 401 without the right basic auth and counts both kinds."""

    def __init__(self) -> None:
        self.authorized = self.refused = 0
        expected = "Basic " + base64.b64encode(f"{GATEWAY_USER}:{GATEWAY_PASSWORD}".encode()).decode()
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = self.headers.get("Authorization") == expected
                gateway.authorized += ok
                gateway.refused += not ok
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def files_holding(root: Path, secrets: tuple[str, ...]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {s}" for s in secrets if s.encode() in data]
    return found


def test_secrets__appear_in_no_file_or_object_a_run_writes(moto_endpoint, bucket, env, tmp_path):
    gateway = AuthGateway()
    try:
        env = {
            **s3_env(env, moto_endpoint, store=f"s3://{bucket}/p"),
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "HYBRIDMI_PUSHGATEWAY_USERNAME": GATEWAY_USER,
            "HYBRIDMI_PUSHGATEWAY_PASSWORD": GATEWAY_PASSWORD,
        }
        out = tmp_path / "out"
        cmd = hybridmi_cmd(
            "train",
            "--config",
            "configs/smoke.yaml",
            *sets([*TINY, f"monitoring.pushgateway_url={gateway.url}", "monitoring.push_interval_s=0.2"]),
            "--out",
            str(out),
        )
        done = run(cmd, env)
    finally:
        gateway.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    assert gateway.authorized > 0 and gateway.refused == 0
    (tmp_path / "run.log").write_text(done.stdout + done.stderr)
    secrets = (GATEWAY_PASSWORD, S3_SECRET)
    assert files_holding(tmp_path, secrets) == []
    client = make_client(moto_endpoint, TEST_KEY, S3_SECRET)
    objects = [o.object_name for o in client.list_objects(bucket, recursive=True)]
    assert objects  # the data set and the checkpoints were published
    leaked = [n for n in objects if any(s.encode() in client.get_object(bucket, n).read() for s in secrets)]
    assert leaked == []


def test_credentials_in_the_gateway_url__are_refused_before_any_work(env, tmp_path):
    done = run(
        hybridmi_cmd(
            "train",
            "--config",
            "configs/smoke.yaml",
            "--set",
            f"monitoring.pushgateway_url=http://{GATEWAY_USER}:{GATEWAY_PASSWORD}@127.0.0.1:9",
            "--out",
            str(tmp_path / "out"),
        ),
        env,
    )
    assert done.returncode == 2 and "credentials in the URL are refused" in done.stderr
    assert GATEWAY_PASSWORD not in done.stderr + done.stdout and not (tmp_path / "out").exists()
