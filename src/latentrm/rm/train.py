"""Bradley-Terry training of a reward head on cached features.

Loss: `-logsigmoid(r_chosen - r_rejected - margin)`, AdamW, mini-batches, a
validation split with early stopping on validation loss (the best epoch's weights
are kept), and a fixed seed: the same inputs and config give the same head,
bit for bit, on the same machine. Training reads cached features only, so an
epoch costs no model forward pass; 5,000 pairs x 200 epochs take seconds on CPU.

Where this departs from the seed method: inputs are standardised inside the head
(see heads.py), and early stopping replaces a fixed epoch count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentrm.errors import LatentrmError
from latentrm.rm.heads import RewardHead, make_head

DEFAULT_LR = {"linear": 1e-2, "projection_sum": 1e-2, "mlp": 3e-3, "bilinear": 3e-3}


@dataclass(frozen=True)
class TrainConfig:
    head: str = field(default="projection_sum", metadata={"help": "linear | projection_sum | mlp | bilinear"})
    scale: float = field(default=0.01, metadata={"help": "projection_sum output scale"})
    mlp_hidden: int = field(default=256, metadata={"help": "mlp hidden width"})
    normalize: bool = field(default=True, metadata={"help": "standardise features inside the head"})
    lr: float | None = field(default=None, metadata={"help": "AdamW learning rate; default per head"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    epochs: int = field(default=200, metadata={"help": "maximum epochs"})
    batch_size: int = field(default=256, metadata={"help": "pairs per step"})
    margin: float = field(default=0.0, metadata={"help": "BT margin: -logsigmoid(r_c - r_r - margin)"})
    patience: int = field(default=20, metadata={"help": "early-stopping patience in epochs"})
    seed: int = field(default=0, metadata={"help": "seed for init and shuffling"})
    edit_loss: str = field(default="pairs", metadata={"help": "term on (original, edited) pairs: pairs | invariance "
                                                              "(rm/augment.py)"})
    edit_weight: float = field(default=1.0, metadata={"help": "weight of the edit term"})

    def learning_rate(self) -> float:
        # Linear-family heads on separable BT data keep improving slowly at small
        # rates (the logit scale grows); 1e-2 converges in a few hundred steps.
        return self.lr if self.lr is not None else DEFAULT_LR.get(self.head, 3e-3)

    def head_options(self) -> dict[str, Any]:
        if self.head == "projection_sum":
            return {"normalize": self.normalize, "scale": self.scale}
        if self.head == "mlp":
            return {"normalize": self.normalize, "mlp_hidden": self.mlp_hidden}
        return {"normalize": self.normalize}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    head: RewardHead
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Mean Bradley-Terry loss over pairs; `chosen`, `rejected`: [n]."""
    return -F.logsigmoid(chosen - rejected - margin).mean()


def edit_term(original: torch.Tensor, edited: torch.Tensor, kind: str) -> torch.Tensor:
    """Per edit pair `[m]`: `pairs` prefers the original (BT), `invariance` penalises any change."""
    gap = original - edited
    return -F.logsigmoid(gap) if kind == "pairs" else gap.pow(2)


def _check(name: str, array: np.ndarray) -> None:
    if array.ndim != 2:
        raise LatentrmError(f"{name} features must be [n, hidden], got shape {array.shape}")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise LatentrmError(f"{name} features of pair {row + 1} contain NaN/inf; re-extract features "
                            "(delete the cache folder) or load the backbone in float32")


def train_head(
    train_chosen: np.ndarray,
    train_rejected: np.ndarray,
    val_chosen: np.ndarray | None = None,
    val_rejected: np.ndarray | None = None,
    config: TrainConfig | None = None,
    device: str = "cpu",
    edits: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Fit a head on `[n, hidden]` chosen/rejected features. Without a validation set, 10% of train is held out.

    `edits`: (original, edited) features `[m, hidden]` of content-free edits of training completions
    (rm/augment.py); each epoch adds `config.edit_weight * edit_term(...)` over all of them, spread over
    the epoch's batches. Early stopping still reads the validation BT loss alone.
    """
    config = config or TrainConfig()
    if config.edit_loss not in ("pairs", "invariance"):
        raise LatentrmError(f"--edit-loss {config.edit_loss!r}: use pairs or invariance")
    _check("chosen", train_chosen)
    _check("rejected", train_rejected)
    if train_chosen.shape != train_rejected.shape:
        raise LatentrmError(f"chosen {train_chosen.shape} and rejected {train_rejected.shape} shapes differ")
    if len(train_chosen) < 2:
        raise LatentrmError(f"only {len(train_chosen)} training pair(s); a reward model needs at least 2")
    generator = torch.Generator().manual_seed(config.seed)
    if val_chosen is None or val_rejected is None or len(val_chosen) == 0:
        split_order = torch.randperm(len(train_chosen), generator=generator).numpy()
        n_val = max(1, len(split_order) // 10)
        val_idx, train_idx = split_order[:n_val], split_order[n_val:]
        val_chosen, val_rejected = train_chosen[val_idx], train_rejected[val_idx]
        train_chosen, train_rejected = train_chosen[train_idx], train_rejected[train_idx]
    _check("validation chosen", val_chosen)
    _check("validation rejected", val_rejected)

    torch.manual_seed(config.seed)
    head = make_head(config.head, train_chosen.shape[1], **config.head_options()).to(device)
    chosen = torch.as_tensor(train_chosen, dtype=torch.float32, device=device)  # [n, hidden]
    rejected = torch.as_tensor(train_rejected, dtype=torch.float32, device=device)
    v_chosen = torch.as_tensor(val_chosen, dtype=torch.float32, device=device)
    v_rejected = torch.as_tensor(val_rejected, dtype=torch.float32, device=device)
    edit_o = edit_e = None
    if edits is not None and len(edits[0]):
        _check("edited original", edits[0])
        _check("edited", edits[1])
        edit_o = torch.as_tensor(edits[0], dtype=torch.float32, device=device)  # [m, hidden]
        edit_e = torch.as_tensor(edits[1], dtype=torch.float32, device=device)
    head.standardize.fit(torch.cat([chosen, rejected]))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.learning_rate(), weight_decay=config.weight_decay)

    best_loss, best_epoch, best_state, history = float("inf"), 0, None, []
    for epoch in range(1, config.epochs + 1):
        head.train()
        order = torch.randperm(len(chosen), generator=generator)
        n_batches = -(-len(order) // config.batch_size)
        edit_chunks = (torch.randperm(len(edit_o), generator=generator).chunk(n_batches)
                       if edit_o is not None and edit_e is not None else ())
        total, edit_total = 0.0, 0.0
        for index, start in enumerate(range(0, len(order), config.batch_size)):
            batch = order[start : start + config.batch_size]
            loss = bt_loss(head(chosen[batch]), head(rejected[batch]), config.margin)
            if index < len(edit_chunks) and edit_o is not None and edit_e is not None:
                chunk = edit_chunks[index]
                term = edit_term(head(edit_o[chunk]), head(edit_e[chunk]), config.edit_loss)
                loss = loss + config.edit_weight * term.mean()
                edit_total += float(term.detach().sum())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        head.eval()
        with torch.no_grad():
            gap = head(v_chosen) - head(v_rejected)
            val_loss = float(-F.logsigmoid(gap - config.margin).mean())
            val_acc = float((gap > 0).float().mean())
        history.append({"epoch": epoch, "train_loss": total / len(chosen), "val_loss": val_loss,
                        "val_accuracy": val_acc, **({"edit_term": edit_total / len(edit_o)} if edit_o is not None
                                                    else {})})
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return TrainResult(head=head.cpu(), best_epoch=best_epoch, epochs_run=len(history), history=history)


def score_array(head: RewardHead, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Scores `[n]` for features `[n, hidden]`."""
    head.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            out.append(head(torch.as_tensor(features[start : start + batch_size], dtype=torch.float32)).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
