"""Presets ship inside the package: a wheel installed outside the checkout resolves every preset."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_resolves_every_preset(tmp_path):
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is needed to build the wheel offline (--no-build-isolation)")
    from importlib.metadata import version

    if int(version("setuptools").split(".")[0]) < 77:  # pyproject.toml's build requirement
        pytest.skip(f"setuptools {version('setuptools')} in this environment is older than the build needs (77)")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("latentrm-*.whl"))
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (
        "import latentrm, sys\n"
        f"assert latentrm.__file__.startswith({str(target)!r}), latentrm.__file__\n"
        "from latentrm.pipeline.config import preset_names\n"
        "from latentrm.pipeline import plan\n"
        "from latentrm.rl.grpo_config import PRESET_DIR, build_config\n"
        "from latentrm.presets import preset_dir\n"
        "names = preset_names()\n"
        "assert {'quick', 'quick-sycophancy', 'cpu-full', 'gpu-qwen3-8b'} <= set(names), names\n"
        "for name in names:\n"
        "    plan.resolve(name)\n"
        "for path in sorted(PRESET_DIR.glob('*.yaml')):\n"
        "    build_config(path.stem, pairs='p.jsonl', rm='rm')\n"
        "assert sorted(p.name for p in preset_dir('accelerate').glob('*.yaml')) == "
        "['fsdp.yaml', 'zero2.yaml', 'zero3.yaml']\n"
        "print('ok', len(names))\n"
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=outside, env=env, capture_output=True, text=True)
    shipped = len(list((ROOT / "src" / "latentrm" / "presets" / "run").glob("*.yaml")))  # every one, in the wheel
    assert result.returncode == 0 and result.stdout.startswith(f"ok {shipped}\n"), result.stdout + result.stderr[-3000:]
