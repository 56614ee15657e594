"""The package's own load.py in a fresh interpreter where hybridmi cannot be imported: torch and numpy only."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import torch

from hybridmi.models.serialize import load_autoencoder
from hybridmi.train.ddim import load_ddim
from hybridmi.train.sampling import decoded_samples

# Run with -I -S: no site-packages (so no editable hybridmi finder), no PYTHONPATH, not the current directory. The
# directories of torch and numpy alone are put on sys.path: .pth files there are not read.
SCRIPT = """
import importlib.util, runpy, sys
sys.path[:0] = {paths!r}
try:
    import hybridmi
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("hybridmi is importable: " + hybridmi.__file__)
import torch
spec = importlib.util.spec_from_file_location("hybridmi_package", {load_py!r})
load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load)
inputs = torch.load({inputs!r})
package = load.load({package!r})
z, y, yhat = package.encode(inputs["images"])
out = dict(z=z, y=y, yhat=yhat, decoded=package.decode(inputs["z"]))
out["generated"] = package.generate(5, steps=4, eta=0.5, seed=7, batch_size=3)
try:
    load.load({tampered!r})
except load.PackageError as exc:
    out["refusal"] = str(exc)
try:  # python TAMPERED/load.py
    runpy.run_path({tampered_load_py!r}, run_name="__main__")
except SystemExit as exc:
    out["script_exit"] = exc.code
torch.save(out, {outputs!r})
assert not any(name == "hybridmi" or name.startswith("hybridmi.") for name in sys.modules)
"""


def _site_dirs() -> list[str]:
    return sorted({str(Path(m.__file__).resolve().parents[1]) for m in (torch, numpy)})


def test_load_py__without_hybridmi_encodes_decodes_and_generates_as_the_library(package, run_artifacts, tmp_path):
    _, art = run_artifacts
    tampered = shutil.copytree(package, tmp_path / "tampered")
    manifest = json.loads((tampered / "package.json").read_text())
    manifest["sampler"]["steps"] = 3  # a valid package.json, one byte changed
    (tampered / "package.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    ae = load_autoencoder(art["model"] / "model.pt")
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = ae.encode(images)
    torch.save({"images": images, "z": z}, tmp_path / "inputs.pt")
    script = SCRIPT.format(
        paths=_site_dirs(),
        load_py=str(package / "load.py"),
        inputs=str(tmp_path / "inputs.pt"),
        package=str(package),
        tampered=str(tampered),
        tampered_load_py=str(tampered / "load.py"),
        outputs=str(tmp_path / "outputs.pt"),
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = torch.load(tmp_path / "outputs.pt")

    torch.testing.assert_close(out["z"], z, rtol=0, atol=1e-5)
    assert torch.equal(out["y"], out["z"][:, :3]) and torch.equal(out["yhat"], out["z"][:, 3:])
    with torch.no_grad():
        torch.testing.assert_close(out["decoded"], ae.decode(z), rtol=0, atol=1e-5)
    settings = dict(steps=4, eta=0.5, seed=7, batch_size=3, spacing="uniform")
    want = torch.cat(list(decoded_samples(load_ddim(art["ddim"]), ae, 5, **settings)))
    torch.testing.assert_close(out["generated"], want, rtol=0, atol=1e-5)
    refusal = out["refusal"]
    assert "package.json" in refusal and "does not match its checksum" in refusal and "\n" not in refusal
    assert out["script_exit"] == 1 and done.stderr.strip().splitlines()[-1] == f"error: {refusal}"
