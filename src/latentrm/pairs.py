"""The pairs file: one preference pair per row, the contract between `data` and `rm`.

Columns (see ARCHITECTURE.md):

- required: `prompt` (plain text, or a list of chat messages: the user turn only,
  never the prefill or grounding), `chosen`, `rejected`;
- `subset` (prompt class such as `real` / `fake`; defaults to `all`);
- `split` (`train` / `val` / `test`, assigned by entity; optional);
- `pair_id`, `entity_id` and provenance columns (`recipe`, `variants`,
  `generator`, `seed`) are kept when present.

Parquet and JSONL are both accepted. Every problem is reported as a one-line
`LatentrmError` naming the file and row.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from latentrm.errors import LatentrmError
from latentrm.io import read_table

REQUIRED = ("prompt", "chosen", "rejected")
SPLITS = ("train", "val", "test")


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        return not value.strip()
    if hasattr(value, "__len__"):
        return len(value) == 0
    return False


def _normalise_prompt(value: Any) -> Any:
    """Parquet returns message lists as numpy arrays of dicts; turn them back into lists."""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [dict(m) for m in value]
    return value


def load_pairs(path: str | Path) -> pd.DataFrame:
    """Load and validate a pairs file. Returns a DataFrame with at least prompt/chosen/rejected/subset/split."""
    path = Path(path)
    frame = read_table(path)
    if frame.empty:
        raise LatentrmError(f"{path}: has no rows; build pairs with `latentrm data build`")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise LatentrmError(
            f"{path}: missing column(s) {', '.join(missing)}; a pairs file needs prompt, chosen, rejected "
            "(and optionally subset, split)"
        )
    frame = frame.reset_index(drop=True)
    frame["prompt"] = [_normalise_prompt(p) for p in frame["prompt"]]
    for column in REQUIRED:
        for index, value in enumerate(frame[column]):
            if _is_blank(value):
                raise LatentrmError(
                    f"{path}: row {index + 1} has an empty '{column}'; remove the row or fill it in"
                )
            if column != "prompt" and not isinstance(value, str):
                raise LatentrmError(f"{path}: row {index + 1} '{column}' must be text, got {type(value).__name__}")
    if "subset" not in frame.columns:
        frame["subset"] = "all"
    frame["subset"] = frame["subset"].fillna("all").astype(str)
    if "split" in frame.columns:
        frame["split"] = frame["split"].fillna("train").astype(str)
        bad = sorted(set(frame["split"]) - set(SPLITS))
        if bad:
            row = int(frame.index[frame["split"] == bad[0]][0]) + 1
            raise LatentrmError(f"{path}: row {row} has split '{bad[0]}'; use one of train, val, test")
    _check_signal(frame, path)
    if "pair_id" not in frame.columns:
        frame["pair_id"] = [f"p{i:06d}" for i in range(len(frame))]
    return frame


def _check_signal(frame: pd.DataFrame, path: Path) -> None:
    """Refuse pairs whose chosen and rejected texts are the same; warn (one line) about repeated rows.

    An identical pair has no preference to learn: its BT gradient is zero and its accuracy is a coin flip
    counted as an error. A repeated row silently weighs that example twice.
    """
    same = [index + 1 for index, (chosen, rejected) in enumerate(zip(frame["chosen"], frame["rejected"]))
            if chosen.strip() == rejected.strip()]
    if same:
        shown = ", ".join(map(str, same[:10])) + (f" and {len(same) - 10} more" if len(same) > 10 else "")
        raise LatentrmError(f"{path}: row(s) {shown} have the same chosen and rejected text; such a pair carries "
                            "no preference: remove those rows")
    keys = [json.dumps([_normalise_prompt(p), c, r], sort_keys=True, default=str)
            for p, c, r in zip(frame["prompt"], frame["chosen"], frame["rejected"])]
    repeats = len(keys) - len(set(keys))
    if repeats:
        print(f"warning: {path}: {repeats} row(s) repeat an earlier row (same prompt, chosen and rejected); "
              "they count more than once", file=sys.stderr)


def assign_splits(frame: pd.DataFrame, val_fraction: float = 0.15, test_fraction: float = 0.15,
                  seed: int = 0) -> pd.DataFrame:
    """Give rows without a `split` one, grouped by `entity_id` (else by prompt) so no group spans two splits."""
    if "split" in frame.columns:
        return frame
    frame = frame.copy()
    groups = frame["entity_id"].astype(str) if "entity_id" in frame.columns else frame["prompt"].map(str)

    def bucket(key: str) -> str:
        # A hash, not an RNG draw: a group's split never changes when rows are added.
        fraction = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        if fraction < test_fraction:
            return "test"
        if fraction < test_fraction + val_fraction:
            return "val"
        return "train"

    frame["split"] = [bucket(g) for g in groups]
    return frame


def merge_pairs(paths: list[str | Path]) -> pd.DataFrame:
    """Several pairs files as one (e.g. sycophancy pairs mixed into a knowledge-awareness build).

    Rows keep their split; a row without one gets the hashed split by entity, the same rule
    `data build` uses, so one entity never lands in two splits. An entity that two files put in
    different splits is refused (it would leak from train into test). Rows repeated across files
    are kept once.
    """
    if len(paths) < 2:
        raise LatentrmError("data merge needs at least two pairs files")
    frames = []
    for path in paths:
        frame = assign_splits(load_pairs(path))
        frame["source_file"] = str(path)
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True)
    if "entity_id" in merged.columns:
        with_entity = merged[merged["entity_id"].notna()]
        splits = with_entity.groupby(with_entity["entity_id"].astype(str))["split"].nunique()
        if (splits > 1).any():
            entity = str(splits[splits > 1].index[0])
            rows = with_entity[with_entity["entity_id"].astype(str) == entity]
            where = ", ".join(f"{f}: {s}" for f, s in rows.groupby("source_file")["split"].first().items())
            raise LatentrmError(f"entity {entity!r} is in different splits ({where}); give the files the same "
                                "split for it, or drop the split column so both are split by entity")
    before = len(merged)
    merged = merged.drop_duplicates(subset=["prompt", "chosen", "rejected"]).reset_index(drop=True)
    merged.attrs["duplicates_dropped"] = before - len(merged)
    return merged.drop(columns=["source_file"])


def save_pairs(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a pairs file atomically (Parquet or JSONL by suffix)."""
    from latentrm.io import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jsonl", ".json"):
        atomic_write_text(path, frame.to_json(orient="records", lines=True, force_ascii=False))
        return path
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def frame_hash(frame: pd.DataFrame, columns: tuple[str, ...] = ("prompt", "chosen", "rejected", "subset")) -> str:
    digest = hashlib.sha256()
    for row in frame[list(columns)].itertuples(index=False):
        digest.update(json.dumps([_normalise_prompt(v) for v in row], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
