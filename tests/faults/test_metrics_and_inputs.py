"""`hybridmi train` reports to a Pushgateway like `stage` (and shrugs off a dead one); bad input ends in one line."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from faultkit import SMOKE, TINY, hybridmi_cmd, last_line, run, s3_env, sets, stage
from store_testkit import free_port

STAGES = ("prepare", "train", "probe", "reconstruction")


class Recorder(BaseHTTPRequestHandler):
    """A Pushgateway stand-in on loopback: records every push (method, path, body) and answers 200."""

    pushes: list[tuple[str, str, str]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
        self.pushes.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_PUT = do_POST = do_DELETE = _record

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def gateway():
    Recorder.pushes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.pushes
    server.shutdown()
    server.server_close()


def train_cmd(out, *overrides: str) -> list[str]:
    return hybridmi_cmd("train", "--config", str(SMOKE), *sets([*TINY, *overrides]), "--out", str(out))


def test_hybridmi_train__pushes_every_stages_metrics(gateway, env, tmp_path):
    url, pushes = gateway
    done = run(
        train_cmd(tmp_path / "run", f"monitoring.pushgateway_url={url}", f"data.cache_dir={tmp_path / 'c'}"), env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    by_stage = {
        name: [body for method, path, body in pushes if path.endswith(f"/stage/{name}") and method == "PUT"]
        for name in STAGES
    }
    assert all(by_stage.values()), {k: len(v) for k, v in by_stage.items()}
    assert (
        "hybridmi_train_loss{" in by_stage["train"][-1]
        and "hybridmi_eval_linear_accuracy_ratio{" in by_stage["probe"][-1]
    )


def test_hybridmi_train__dead_pushgateway_costs_one_warning_per_stage_and_nothing_else(env, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = run(
        train_cmd(tmp_path / "run", f"monitoring.pushgateway_url={url}", f"data.cache_dir={tmp_path / 'c'}"), env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line and "Pushgateway" in line]
    assert 1 <= len(warnings) <= len(STAGES)
    assert (tmp_path / "run" / "reconstruction" / "metrics.json").is_file()


BAD_INPUTS = {
    "missing s3 input": (
        ["--input", "dataset=s3://{bucket}/no/such/artifact", "--output", "model={tmp}/m"],
        {},
        "no artifact s3://",
    ),
    "input not a data set": (
        ["--input", "dataset={tmp}", "--output", "model={tmp}/m"],
        {},
        "is not a prepared data set",
    ),
    "output without a value": (["--input", "dataset={tmp}", "--output", "model"], {}, "is not of the form NAME=PATH"),
    "bucket without a key": (
        ["--input", "dataset={tmp}", "--output", "model=s3://{bucket}"],
        {},
        "names a bucket but no key",
    ),
    "config out of range": (["--set", "train.batch_size=0", "--output", "model={tmp}/m"], {}, "train.batch_size"),
    "store with a bad scheme": (
        ["--input", "dataset={tmp}", "--output", "model={tmp}/m"],
        {"HYBRIDMI_STORE": "ftp://x/y"},
        "unsupported scheme",
    ),
    "retry count not a number": (
        ["--input", "dataset={tmp}", "--output", "model=s3://{bucket}/m"],
        {"HYBRIDMI_S3_RETRY_ATTEMPTS": "many"},
        "HYBRIDMI_S3_RETRY_ATTEMPTS='many' is not a int",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input__one_clear_line_and_no_traceback(case, moto_endpoint, bucket, env, tmp_path):
    args, extra, expected = BAD_INPUTS[case]
    args = [a.format(bucket=bucket, tmp=tmp_path) for a in args]
    done = run(hybridmi_cmd("stage", "train", "--config", str(SMOKE), *args), {**s3_env(env, moto_endpoint), **extra})
    assert done.returncode in (1, 2)
    assert last_line(done.stderr).startswith("hybridmi:") and expected in last_line(done.stderr), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not any((tmp_path / "m").rglob("*"))  # no work was done


def test_bad_input__unpublished_output_store_is_refused_before_training(moto_endpoint, env, tiny_dataset, tmp_path):
    done = run(
        stage("train", inputs={"dataset": tiny_dataset}, outputs={"model": "s3://no-such-bucket-anywhere/m"}),
        s3_env(env, moto_endpoint),
    )
    assert done.returncode == 1 and "bucket 'no-such-bucket-anywhere' does not exist" in last_line(done.stderr)
    assert "hybrid:" not in done.stderr
