"""A non-editable install finds its configs from any directory (the wheel ships conf/)."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_trains_outside_the_repo(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("ganlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ganlab/conf/config.yaml" in names and "ganlab/conf/loss/wgan_gp.yaml" in names
    shipped = {f"ganlab/metrics/weights/{n}.pt" for n in ("mnist_cnn_v2", "mnist_features_v1")}
    assert shipped <= set(names)  # the trained metric networks travel with the package

    # A fresh venv holding only the wheel; torch & co. come from this interpreter's
    # site-packages through a .pth (installing torch again would take minutes and GBs).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    venv_site = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (venv_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.check_output(
        [str(py), "-c", "import ganlab; print(ganlab.__file__)"], cwd=elsewhere, env=env, text=True
    ).strip()
    assert where.startswith(str(venv_site)), where  # the wheel, not the checkout

    for cmd in ([str(venv / "bin" / "ganlab-train")], [str(py), "-m", "ganlab.train"]):
        run_dir = elsewhere / f"run-{len(cmd)}"
        proc = subprocess.run(
            [
                *cmd,
                "model=mlp",
                "data=mnist_sample",
                "trainer.steps=2",
                "trainer.batch_size=8",
                "trainer.progress=false",
                f"hydra.run.dir={run_dir}",
            ],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((run_dir / "results.json").read_text())["steps"] == 2
