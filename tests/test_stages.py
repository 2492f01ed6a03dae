"""The one stage contract (stages.py): one key path, one list of runtime fields, ran-or-skipped from the stage."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import latentrm
from latentrm.stages import PIPELINE, RUNTIME_FIELDS, is_done, recording, stage_key, write_manifest


@dataclass(frozen=True)
class Config:
    pairs: str = "a.parquet"
    layer: int = 3
    batch_size: int = 8
    run_dir: str = "runs/x"


def test_the_key_leaves_out_runtime_fields_and_inputs_named_by_content():
    base = stage_key(Config(), {"pairs": "abc"})
    assert stage_key(Config(batch_size=64, run_dir="elsewhere"), {"pairs": "abc"}) == base  # runtime only
    assert stage_key(Config(pairs="moved/a.parquet"), {"pairs": "abc"}) == base  # the same rows, moved
    assert stage_key(Config(), {"pairs": "abd"}) != base  # other rows
    assert stage_key(Config(layer=4), {"pairs": "abc"}) != base
    assert stage_key(Config(), {"pairs": "abc"}, extra={"backbone": "r1"}) != base
    assert {"batch_size", "device", "threads", "run_dir", "out"} <= set(RUNTIME_FIELDS)


def test_recording_sees_the_manifests_a_stage_writes(tmp_path):
    with recording() as outer:
        with recording() as inner:
            pass
        (tmp_path / "a").mkdir()
        write_manifest(tmp_path / "a", "a", "k1", Config())
    assert inner == [] and outer == [tmp_path / "a" / "manifest.json"] and is_done(tmp_path / "a", "k1")


def test_every_stage_keys_through_stage_key_and_none_keeps_its_own():
    """No stage defines a `key` / `config_key` method or function of its own, and no call to `stage_key`
    passes a list of fields to leave out: the one list is RUNTIME_FIELDS. (A judge's per-answer cache key is
    no stage key.)"""
    root = Path(latentrm.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.parent.name == "judges":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in ("key", "config_key"):
                offenders.append(f"{path.relative_to(root)}: def {node.name}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "stage_key":
                offenders += [f"{path.relative_to(root)}: stage_key(..., {k.arg}=)" for k in node.keywords
                              if k.arg not in ("extra",)]
    assert offenders == []


def test_the_pipeline_takes_its_stage_list_from_the_contract():
    from latentrm.pipeline.run import STAGE_NAMES, STAGES

    assert STAGE_NAMES == tuple(name for name, _ in PIPELINE) and set(STAGES) == set(STAGE_NAMES)
