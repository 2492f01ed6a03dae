"""The import layers of shared/ARCHITECTURE.md hold: `lint-imports` with the contract in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports() -> str:
    found = Path(sys.executable).parent / "lint-imports"
    if found.exists():
        return str(found)
    on_path = shutil.which("lint-imports")
    if on_path is None:
        pytest.fail("lint-imports is missing: install the dev extra (`pip install -e .[dev]`, scripts/setup.sh does)")
    return on_path


def test_every_stage_imports_only_earlier_stages_and_services():
    result = subprocess.run([lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_the_reward_model_layer_does_not_reach_up_to_rl():
    """The arrow issue 21 named: `rm score --shaper` imported rl; shapers now live in rm.shaping."""
    import grimp

    graph = grimp.build_graph("latentrm")
    assert not graph.chain_exists(importer="latentrm.rm", imported="latentrm.rl", as_packages=True)
    assert not graph.chain_exists(importer="latentrm.audit", imported="latentrm.rl", as_packages=True)
