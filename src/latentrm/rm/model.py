"""`LatentRewardModel`: a frozen backbone + a reward head at one layer, saved as `head.safetensors` + `rm.json`.

    rm = LatentRewardModel.load("runs/quick/rm")
    rm.score(["Who is Dr. Ola Nordmann?"], ["I'm not familiar with that name."])   # -> [float]
    GRPOTrainer(..., reward_funcs=[rm])                                              # TRL contract

Scoring renders each (prompt, completion) with `models.render_for_scoring` (the
same function training used), runs a truncated forward to `layer`, pools, and
applies the head. Loading onto a backbone whose revision or hidden size differs
from the recorded one is an error, because the head would silently read a
different feature space.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentrm._version import __version__
from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text
from latentrm.models import Backbone, load_backbone, render_for_scoring
from latentrm.rm.heads import RewardHead, head_from_config

FORMAT_VERSION = 1
HEAD_FILE = "head.safetensors"
META_FILE = "rm.json"


class LatentRewardModel:
    """A reward model that reads one hidden state of a frozen backbone."""

    def __init__(self, backbone: Backbone, head: RewardHead, meta: dict[str, Any]) -> None:
        self.backbone = backbone
        self.head = head.eval()
        self.meta = meta
        self.layer: int = int(meta["layer"])
        self.pooling: str = str(meta.get("pooling", "last"))
        from latentrm.rm.ensemble import feature_layers

        # the layers read, in input order: rm.json's `layers` (several side by side), a layer ensemble's, or [layer]
        self.layers: list[int] = [int(x) for x in meta.get("layers") or feature_layers(head, self.layer)]
        self.max_length: int = int(meta.get("max_length", 2048))
        self.batch_size: int = int(meta.get("batch_size", 16))
        self.__name__ = "latent_rm"  # TRL logs reward functions by __name__

    # ------------------------------------------------------------------ building

    @classmethod
    def from_head(cls, backbone: Backbone, head: RewardHead, layer: int, pooling: str = "last",
                  max_length: int = 2048, **meta: Any) -> LatentRewardModel:
        """Wrap a trained head; `meta` adds training info, metrics and quantiles to rm.json."""
        record: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "latentrm_version": __version__,
            "backbone": {"spec": backbone.spec, "revision": backbone.revision, "hidden_size": backbone.hidden_size,
                         "num_layers": backbone.num_layers, "dtype": backbone.dtype_name},
            "layer": int(layer),
            "pooling": pooling,
            "max_length": int(max_length),
            "head": head.config(),
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        record.update(meta)
        return cls(backbone, head, record)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Write `head.safetensors` then `rm.json` (last, so a half-saved folder does not load)."""
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        tmp = folder / f".{HEAD_FILE}.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(folder / HEAD_FILE)
        atomic_write_text(folder / META_FILE, json.dumps(self.meta, indent=1))
        return folder

    @staticmethod
    def read_meta(path: str | Path) -> dict[str, Any]:
        meta_path = Path(path) / META_FILE
        if not meta_path.exists():
            raise LatentrmError(f"{meta_path} is missing; pass a folder written by `latentrm rm train`")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise LatentrmError(f"{meta_path} is not valid JSON ({exc.msg}); re-run `latentrm rm train`")
        if not isinstance(meta, dict):
            raise LatentrmError(f"{meta_path} must hold a JSON object; re-run `latentrm rm train`")
        for key in ("backbone", "layer", "head"):
            if key not in meta:
                raise LatentrmError(f"{meta_path} has no '{key}' field; re-run `latentrm rm train`")
        if not isinstance(meta["layer"], int) or isinstance(meta["layer"], bool):
            raise LatentrmError(f"{meta_path}: 'layer' is {meta['layer']!r}, not a layer number; re-run "
                                "`latentrm rm train`")
        if not isinstance(meta["backbone"], dict) or not isinstance(meta["head"], dict):
            raise LatentrmError(f"{meta_path}: 'backbone' and 'head' must be objects; re-run `latentrm rm train`")
        return meta

    @classmethod
    def load(cls, path: str | Path, backbone: Backbone | None = None, *, device: str | None = None,
             dtype: str = "auto", check_revision: bool = True) -> LatentRewardModel:
        """Load a saved reward model, loading its recorded backbone unless one is given."""
        folder = Path(path)
        meta = cls.read_meta(folder)
        head = cls._load_head(folder, meta)  # first: a broken folder fails before the backbone loads
        recorded = meta["backbone"]
        if backbone is None:
            backbone = load_backbone(recorded["spec"], dtype=dtype, device=device)
        if backbone.hidden_size != int(recorded["hidden_size"]):
            raise LatentrmError(
                f"{folder}: head expects hidden size {recorded['hidden_size']} but backbone '{backbone.spec}' has "
                f"{backbone.hidden_size}; load it with the backbone it was trained on ({recorded['spec']})"
            )
        if check_revision and backbone.revision != recorded["revision"]:
            raise LatentrmError(
                f"{folder}: trained on backbone revision {recorded['revision']} but '{backbone.spec}' is "
                f"{backbone.revision}; retrain the head on this backbone (or pass check_revision=False)"
            )
        if int(meta["layer"]) > backbone.num_layers:
            raise LatentrmError(f"{folder}: layer {meta['layer']} does not exist in a {backbone.num_layers}-layer "
                                "backbone; retrain with a valid --layer")
        return cls(backbone, head, meta)

    @staticmethod
    def _load_head(folder: Path, meta: dict[str, Any]) -> RewardHead:
        """The head described by rm.json, with the weights of head.safetensors; every mismatch names both files."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        meta_path, head_path = folder / META_FILE, folder / HEAD_FILE
        config = meta["head"]
        head_type = config.get("type") if isinstance(config, dict) else None
        mismatch = (f"{meta_path} (head type {head_type!r}) does not match {head_path}; re-run `latentrm rm train` "
                    "or restore the rm.json written with that head")
        try:
            head = head_from_config(config)
        except (LatentrmError, KeyError, TypeError, ValueError) as exc:
            raise LatentrmError(f"{mismatch} ({exc})") from None
        try:
            state = load_file(str(head_path))
        except (OSError, SafetensorError) as exc:
            raise LatentrmError(f"{head_path} cannot be read ({exc}); re-run `latentrm rm train`")
        expected = head.state_dict()
        for name, tensor in expected.items():
            if name not in state:
                raise LatentrmError(f"{head_path} has no tensor '{name}'; it does not match head type "
                                    f"'{head_type}' in {meta_path}; re-run `latentrm rm train`")
            if tuple(state[name].shape) != tuple(tensor.shape):
                raise LatentrmError(
                    f"{head_path}: tensor '{name}' has shape {tuple(state[name].shape)}, expected "
                    f"{tuple(tensor.shape)} for a {head_type} head of hidden size "
                    f"{config.get('hidden_size')}; the file does not belong to {meta_path}"
                )
        extra = sorted(set(state) - set(expected))
        if extra:
            raise LatentrmError(f"{head_path} holds tensor(s) {', '.join(extra[:3])} that a {head_type} head does "
                                f"not have; it does not match {meta_path}; re-run `latentrm rm train`")
        head.load_state_dict(state)
        return head

    # ------------------------------------------------------------------ scoring

    def features(self, prompts: Sequence, completions: Sequence, *, batch_size: int | None = None,
                 max_tokens: int = 16384, progress: bool = False) -> np.ndarray:
        """Pooled hidden states `[n, parts * L * hidden]` at this model's layers (`features.stack_readout`)."""
        from latentrm.features import get_hiddens, pooling_parts, stack_readout

        if len(prompts) != len(completions):
            raise LatentrmError(f"{len(prompts)} prompts but {len(completions)} completions; they must pair up")
        layers = self.layers
        parts = len(pooling_parts(self.pooling))  # read from rm.json as a str; a bad spec is a one-line error
        texts = [render_for_scoring(self.backbone.tokenizer, p, c) for p, c in zip(prompts, completions)]
        hiddens = get_hiddens(self.backbone.model, self.backbone.tokenizer, texts, layers, self.pooling,
                              batch_size=batch_size or self.batch_size, max_tokens=max_tokens,
                              max_length=self.max_length, progress=progress)
        if not texts:
            return np.zeros((0, self.backbone.hidden_size * len(layers) * parts), np.float32)
        return stack_readout({layer: hiddens[layer].numpy() for layer in layers}, layers, parts)

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Head scores `[n]` for features `[n, hidden]`."""
        from latentrm.rm.train import score_array

        return score_array(self.head, features)

    def score(self, prompts: Sequence, completions: Sequence, *, batch_size: int | None = None,
              max_tokens: int = 16384, progress: bool = False) -> list[float]:
        """One scalar per (prompt, completion). Prompts and completions may be text or chat messages."""
        return self.score_features(self.features(prompts, completions, batch_size=batch_size,
                                                 max_tokens=max_tokens, progress=progress)).tolist()

    def score_with_std(self, prompts: Sequence, completions: Sequence, *,
                       batch_size: int | None = None, max_tokens: int = 16384) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std `[n]` across an ensemble's heads (std 0 for a single head); see rm/ensemble.py."""
        from latentrm.rm.ensemble import mean_std, member_scores

        return mean_std(member_scores(self.head, self.features(prompts, completions, batch_size=batch_size,
                                                                 max_tokens=max_tokens)))

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs: Any) -> list[float]:
        """TRL `reward_funcs` contract: `(prompts, completions, completion_ids=..., **columns) -> list[float]`."""
        return self.score(prompts, completions)

    @property
    def chosen_quantiles(self) -> dict[str, dict[str, list[float]]]:
        return dict(self.meta.get("chosen_quantiles", {}))

    def __repr__(self) -> str:
        return (f"LatentRewardModel(backbone={self.backbone.spec!r}, layer={self.layer}, pooling={self.pooling!r}, "
                f"head={self.meta['head']['type']!r})")
