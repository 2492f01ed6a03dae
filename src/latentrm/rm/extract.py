"""The features stage: hidden states of every chosen and rejected completion, at the asked layers, cached.

    latentrm features --pairs runs/data/pairs.parquet --run-dir runs/quick --layers 9,15,21

`run(FeaturesConfig) -> Path` fills the content-addressed feature cache (`<run-dir>/cache` unless
`cache_dir` is set) in one truncated forward pass up to the deepest layer, and writes
`<run-dir>/features/features.json` (layers, rows, hidden size, where the cache is) and `manifest.json`
last. The `rm` stage reads the same cache, so training after this costs no forward pass.

Under `torchrun` / `accelerate launch` each rank extracts a contiguous shard of the texts into a cache entry of
its own (resumed independently), every rank reads them all in order, and rank 0 writes the merged entry and
the stage folder (`features._sharded`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from latentrm.io import atomic_write_text
from latentrm.models import Backbone, load_backbone
from latentrm.pairs import frame_hash, load_pairs
from latentrm.ranks import process_group
from latentrm.stages import Timer, forget, is_done, stage_key, write_manifest


@dataclass(frozen=True)
class FeaturesConfig:
    pairs: str
    run_dir: str = "runs/quick"
    model: str = "embedded"
    layers: tuple[int, ...] = (15,)
    pooling: str = "last"
    dtype: str = "auto"
    device: str | None = None
    max_length: int = 2048
    batch_size: int = 16
    cache_dir: str | None = None

    @property
    def folder(self) -> Path:
        return Path(self.run_dir) / "features"


def _no_log(message: str) -> None:
    return None


def run(config: FeaturesConfig, *, force: bool = False, backbone: Backbone | None = None,
        log: Callable[[str], None] = _no_log) -> Path:
    """Extract (or find cached) features for `config.layers`; returns `<run-dir>/features/`."""
    from latentrm.features import resolve_layers
    from latentrm.rm.stage import RMStageConfig, pair_features

    frame = load_pairs(config.pairs)
    backbone = backbone or load_backbone(config.model, dtype=config.dtype, device=config.device)
    layers = resolve_layers(list(config.layers), backbone.num_layers)
    inputs = {"pairs": frame_hash(frame), "backbone": backbone.revision}
    key = stage_key(config, inputs, extra={"layers": layers})
    folder = config.folder
    if not force and is_done(folder, key):
        log(f"{folder} is up to date (same pairs, layers and read-out)")
        return folder
    rank, _, barrier = process_group()  # under torchrun / accelerate the ranks split the texts (features.py)
    if rank == 0:
        forget(folder)
    timer = Timer()
    stage_config = RMStageConfig(pairs=config.pairs, run_dir=config.run_dir, model=config.model,
                                 pooling=config.pooling, dtype=config.dtype, max_length=config.max_length,
                                 batch_size=config.batch_size, cache_dir=config.cache_dir)
    result = pair_features(backbone, frame, layers, stage_config)
    if rank != 0:  # rank 0 writes the stage folder; the others return once it is written
        barrier()
        return folder
    hidden = {layer: int(chosen.shape[1]) for layer, (chosen, _) in result.items()}
    cache = Path(config.cache_dir) if config.cache_dir else Path(config.run_dir) / "cache"
    info = {"layers": layers, "pairs": len(frame), "texts": 2 * len(frame), "hidden_size": hidden,
            "pooling": config.pooling, "cache_dir": str(cache)}
    atomic_write_text(folder / "features.json", json.dumps(info, indent=1))
    write_manifest(folder, "features", key, config, inputs=inputs, outputs=["features.json"],
                   summary={"layers": layers, "pairs": len(frame)}, seconds=timer.seconds())
    barrier()
    return folder
