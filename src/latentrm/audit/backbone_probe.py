"""The backbone probe: can a linear read-out of the frozen backbone tell a real person from a made-up one?

    latentrm rm probe --model embedded --layers 3,9,15,18,21,30 --n-real 100 --n-fake 100 --out runs/probe

What it does: renders "Tell me about NAME." for real people (`data.entities.load_real_entities`) and made-up
ones (`data.fakes.fake_entities`) with the chat template and the generation prompt, reads each layer's hidden
state at the last prompt token (where the model is about to answer) with one truncated forward
(`features.get_hiddens`), and fits a logistic regression per layer under stratified K-fold cross-validation
grouped by entity (no person is in a train and a test fold). It reports each layer's fold-mean accuracy and
AUROC with the std over folds, next to the majority-class baseline, and writes `probe.json`, `probe.png` and
`config.json` into the output folder, `manifest.json` last (the stage contract of `stages.py`: a rerun with
the same config and backbone is skipped).

Why: a latent reward model can only reward "hedge on a made-up name" if the backbone's state already separates
the two kinds of name; a layer where this probe is near chance cannot carry that reward.

Where it departs from the issue: scikit-learn is not installed, so the classifier is a small L2-regularised
logistic regression fit with L-BFGS in torch (sklearn's objective with C=1, on features standardised with the
training fold's mean and std).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.audit.context import AuditContext, ProbeResult
from latentrm.audit.stats import auc, json_safe
from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text
from latentrm.stages import Timer, begin, forget, is_done, stage_key, write_manifest

TEMPLATE = "Tell me about {name}."
LAYER_STEP = 3  # the default layers: every third block, and the last one
CLASSIFIER = "logistic regression (torch L-BFGS, L2 with C=1, standardised on the train fold)"


@dataclass(frozen=True)
class ProbeConfig:
    out: str = field(default="runs/probe", metadata={"help": "output folder (probe.json, probe.png)"})
    model: str = field(default="embedded", metadata={"help": "backbone: embedded | HF folder | cached hub id"})
    layers: tuple[int, ...] | str = field(default="every3", metadata={
        "help": "layers: every3 (every third block and the last), all, or a list such as 3,9,15"})
    n_real: int = field(default=100, metadata={"help": "real people"})
    n_fake: int = field(default=100, metadata={"help": "made-up people"})
    folds: int = field(default=5, metadata={"help": "cross-validation folds, grouped by entity"})
    seed: int = 0
    template: str = field(default=TEMPLATE, metadata={"help": "the prompt; {name} is replaced by the person"})
    dtype: str = "float32"
    batch_size: int = 32
    device: str | None = None
    surface: bool = field(default=True, metadata={"help": "also probe the name string alone (character n-grams "
                                                           "and token count) and the embedding layer"})
    matched_locales: bool = field(default=False, metadata={
        "help": "draw the made-up names from the faker locales of the real names' nationalities (a study of "
                "how much of real-vs-made-up is the names' surface; training data is left alone)"})


def parse_layers(text: str) -> tuple[int, ...] | str:
    """`--layers` text: `every3`, `all`, or comma-separated integers; anything else is one line."""
    text = text.strip()
    if text in ("every3", "all"):
        return text
    try:
        layers = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise LatentrmError(f"--layers {text!r}: give every3, all, or comma-separated layer numbers such as "
                            "3,9,15") from None
    if not layers:
        raise LatentrmError("--layers is empty; give every3, all, or layer numbers such as 3,9,15")
    return layers


def resolve_probe_layers(spec: tuple[int, ...] | str, num_layers: int) -> list[int]:
    """The sorted layers a spec names in a `num_layers`-block backbone (1-indexed; 0 is the embeddings)."""
    from latentrm.features import resolve_layers

    if spec == "all":
        return list(range(1, num_layers + 1))
    if spec == "every3":
        return sorted({*range(LAYER_STEP, num_layers + 1, LAYER_STEP), num_layers})
    if isinstance(spec, str):
        spec = parse_layers(spec)
    try:
        return resolve_layers(list(spec), num_layers)  # type: ignore[arg-type]
    except LatentrmError as exc:
        raise LatentrmError(f"--layers: {exc}") from None


def model_num_layers(spec: str) -> int:
    """The backbone's block count, read from its config.json (the weights are not loaded)."""
    from transformers import AutoConfig

    from latentrm.models import resolve_model

    resolved = resolve_model(spec)
    return int(AutoConfig.from_pretrained(str(resolved.path)).get_text_config().num_hidden_layers)


def check_config(config: ProbeConfig, num_layers: int | None = None) -> list[int]:
    """Bad input as one line before any model loads; returns the resolved layers when `num_layers` is given."""
    if config.folds < 2:
        raise LatentrmError(f"--folds {config.folds}: cross-validation needs at least 2 folds")
    for option, value in (("--n-real", config.n_real), ("--n-fake", config.n_fake)):
        if value < config.folds:
            raise LatentrmError(f"{option} {value} is below --folds {config.folds}: every fold needs at least one "
                                "person of each class")
    if "{name}" not in config.template:
        raise LatentrmError(f"--template {config.template!r} has no {{name}} placeholder")
    if isinstance(config.layers, str):
        parse_layers(config.layers)
    return resolve_probe_layers(config.layers, num_layers) if num_layers is not None else []


# --------------------------------------------------------------------------- people and hidden states


def matched_locales(real: Sequence[Any]) -> list[str]:
    """One faker locale per real person whose nationality a locale writes (German -> de_DE, ...), in order; the
    made-up names then come from the same mix of name cultures as the real ones."""
    from latentrm.data.fakes import LOCALES

    by_nationality = {adjective.lower(): locale for locale, adjective in LOCALES.items()}
    out = []
    for entity in real:
        text = f"{entity.facts.get('nationality', '')} {entity.facts.get('descriptor', '')} {entity.description}"
        words = text.lower()
        locale = next((loc for adj, loc in by_nationality.items() if adj and adj in words), None)
        if locale:
            out.append(locale)
    return out


def probe_people(n_real: int, n_fake: int, seed: int = 0, *, matched: bool = False) -> list[dict[str, str]]:
    """`[{"entity_id", "name", "subset"}]`: `n_real` real people (a seeded sample) then `n_fake` made-up ones;
    `matched`: the made-up names' locales follow the real people's nationalities."""
    from latentrm.data.entities import fold, known_real_names, load_real_entities
    from latentrm.data.fakes import fake_entities

    real = sorted(load_real_entities(), key=lambda e: e.entity_id)
    if len(real) < n_real:
        raise LatentrmError(f"--n-real {n_real}: only {len(real)} real people are installed; lower --n-real")
    random.Random(seed).shuffle(real)
    full, surnames = known_real_names()
    full |= {fold(e.name) for e in real}
    locales = matched_locales(real[:n_real]) if matched else None
    if matched and not locales:
        raise LatentrmError("--matched-locales: no real person's nationality matches a faker locale")
    fakes = fake_entities(n_fake, real_full=full, real_surnames=surnames, seed=seed, locales=locales)
    return [{"entity_id": e.entity_id, "name": e.name, "subset": e.kind} for e in real[:n_real] + fakes]


def prompt_hiddens(backbone: Any, prompts: Sequence[str], layers: Sequence[int], *,
                   batch_size: int = 32) -> dict[int, np.ndarray]:
    """`{layer: [n, hidden]}`: each layer's state at the last token of the chat-formatted generation prompt."""
    from latentrm.features import get_hiddens
    from latentrm.models import ScoringText, render_generation_prompt

    rendered = [render_generation_prompt(backbone.tokenizer, prompt) for prompt in prompts]
    texts = [ScoringText(text, len(text)) for text in rendered]  # no completion: `last` is the last prompt token
    hiddens = get_hiddens(backbone.model, backbone.tokenizer, texts, layers, "last", batch_size=batch_size)
    return {layer: tensor.numpy() for layer, tensor in hiddens.items()}


# --------------------------------------------------------------------------- the probe


def group_folds(labels: np.ndarray, groups: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """`[n]` fold index per row: every group in one fold, each class's groups dealt round-robin (stratified)."""
    rng = np.random.default_rng(seed)
    group_arr = np.asarray(groups, dtype=object)
    assignment = np.zeros(len(labels), dtype=int)
    offset = 0
    for label in np.unique(labels):
        names = list(dict.fromkeys(group_arr[labels == label]))  # first-seen order, then shuffled
        order = rng.permutation(len(names))
        for rank, index in enumerate(order):
            assignment[group_arr == names[index]] = (rank + offset) % folds
        offset += len(names)  # the next class starts where this one stopped, so fold sizes stay even
    return assignment


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, max_iter: int = 200) -> tuple[np.ndarray, float]:
    """L2 logistic regression `[n, d], [n] in {0, 1}` -> (weights [d], bias): sklearn's objective, L-BFGS."""
    import torch

    features = torch.as_tensor(x, dtype=torch.float64)  # [n, d]
    targets = torch.as_tensor(y, dtype=torch.float64)  # [n]
    weights = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7,
                                  line_search_fn="strong_wolfe")
    penalty = 1.0 / (2.0 * c * len(y))  # 0.5 |w|^2 + C sum(loss), divided by C n

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weights + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets) + penalty * weights @ weights
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().numpy(), float(bias.detach())


SURFACE_DIM = 1024  # hashed character n-gram buckets


def surface_features(names: Sequence[str], tokenizer: Any = None) -> np.ndarray:
    """`[n, SURFACE_DIM + 3]`: the name string alone, with no model state: hashed counts of its character 2-, 3-
    and 4-grams (lower-cased, with word boundaries), its token count under `tokenizer` (when given), its word
    count and its share of non-ASCII letters. Written by hand (a stable hash over n-grams) because scikit-learn
    is not a dependency; the classifier on top is the same logistic regression as every layer's."""
    import zlib

    rows = np.zeros((len(names), SURFACE_DIM + 3))
    for i, name in enumerate(names):
        text = f" {name.lower()} "
        for size in (2, 3, 4):
            for start in range(len(text) - size + 1):
                rows[i, zlib.crc32(text[start:start + size].encode()) % SURFACE_DIM] += 1.0
        rows[i, SURFACE_DIM] = len(tokenizer(name, add_special_tokens=False)["input_ids"]) if tokenizer else 0.0
        rows[i, SURFACE_DIM + 1] = len(name.split())
        rows[i, SURFACE_DIM + 2] = sum(not c.isascii() for c in name) / max(len(name), 1)
    return rows


def name_embeddings(backbone: Any, names: Sequence[str]) -> np.ndarray:
    """`[n, hidden]`: the mean input embedding of each name's tokens. The embedding layer at the last prompt
    token is the same token for every prompt (chance by construction), so the embedding baseline reads the
    name's own tokens: what the vocabulary alone says, before any block has run."""
    import torch

    table = backbone.model.get_input_embeddings().weight.detach().float()
    rows = []
    for name in names:
        ids = backbone.tokenizer(" " + name, add_special_tokens=False)["input_ids"]
        rows.append(table[torch.as_tensor(ids, device=table.device)].mean(0).cpu().numpy())
    return np.stack(rows).astype(np.float64)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(np.nanmean(array)), float(np.nanstd(array))


def probe_layer(x: np.ndarray, labels: np.ndarray, fold_of: np.ndarray) -> dict[str, float]:
    """Cross-validated accuracy and AUROC of a linear read-out of `x` [n, d], plus the majority baseline."""
    accuracy, auroc, majority = [], [], []
    for k in range(int(fold_of.max()) + 1):
        test, train = fold_of == k, fold_of != k
        if not test.any() or len(np.unique(labels[train])) < 2:
            continue
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        weights, bias = fit_logistic((x[train] - mean) / std, labels[train])
        logits = ((x[test] - mean) / std) @ weights + bias
        accuracy.append(float(((logits > 0) == (labels[test] == 1)).mean()))
        auroc.append(auc(logits[labels[test] == 1], logits[labels[test] == 0]))
        guess = int(labels[train].mean() >= 0.5)  # the training fold's larger class
        majority.append(float((labels[test] == guess).mean()))
    acc, acc_std = _mean_std(accuracy)
    roc, roc_std = _mean_std(auroc)
    return {"accuracy": acc, "accuracy_std": acc_std, "auroc": roc, "auroc_std": roc_std,
            "majority": float(np.mean(majority)), "folds": len(accuracy)}


def probe_features(features: dict[int, np.ndarray], labels: Sequence[int], groups: Sequence[str], folds: int = 5,
                   seed: int = 0) -> list[dict[str, Any]]:
    """One row per layer (`{layer, accuracy, accuracy_std, auroc, auroc_std, majority, folds}`), same folds."""
    label_arr = np.asarray(labels, dtype=int)
    fold_of = group_folds(label_arr, groups, folds, seed)
    return [{"layer": int(layer), **probe_layer(np.asarray(x, dtype=np.float64), label_arr, fold_of)}
            for layer, x in sorted(features.items())]


# --------------------------------------------------------------------------- the stage


def _key(config: ProbeConfig, revision: str, layers: list[int]) -> str:
    return stage_key(config, extra={"backbone": revision, "layers": layers})


def compute(config: ProbeConfig, backbone: Any, layers: list[int]) -> dict[str, Any]:
    """The probe's report for a loaded backbone: people, hidden states, per-layer rows and the best layer; with
    `surface`, the same cross-validation on the name string alone and on the name's mean input embedding, and
    each layer's AUROC margin over both."""
    people = probe_people(config.n_real, config.n_fake, config.seed, matched=config.matched_locales)
    prompts = [config.template.format(name=p["name"]) for p in people]
    hiddens = prompt_hiddens(backbone, prompts, list(layers), batch_size=config.batch_size)
    labels = [1 if p["subset"] == "real" else 0 for p in people]
    groups = [p["entity_id"] for p in people]
    rows = probe_features({k: v for k, v in hiddens.items() if k in layers}, labels, groups, config.folds,
                          config.seed)
    best = max(rows, key=lambda r: (r["accuracy"], r["auroc"]))
    baselines: dict[str, Any] = {}
    if config.surface:
        names = [p["name"] for p in people]
        surface = probe_features({-1: surface_features(names, backbone.tokenizer)}, labels, groups, config.folds,
                                 config.seed)[0]
        embedding = probe_features({0: name_embeddings(backbone, names)}, labels, groups, config.folds,
                                   config.seed)[0]
        baselines = {"surface": {**surface, "layer": "name string"}, "embedding": embedding}
        for row in rows:
            row["margin_surface"] = row["auroc"] - surface["auroc"]
            row["margin_embedding"] = row["auroc"] - embedding["auroc"]
    return {"model": config.model, "revision": getattr(backbone, "revision", ""),
            "num_layers": int(backbone.num_layers), "template": config.template,
            "n_real": sum(labels), "n_fake": len(labels) - sum(labels), "folds": config.folds,
            "grouped_by": "entity_id", "read_out": "last prompt token (chat template + generation prompt)",
            "classifier": CLASSIFIER, "positive_class": "real", "layers": rows, "best_layer": best["layer"],
            "best_accuracy": best["accuracy"], "best_auroc": best["auroc"], "baselines": baselines,
            "matched_locales": config.matched_locales,
            "examples": {"real": prompts[0] if labels and labels[0] else "",
                         "fake": prompts[-1] if labels and not labels[-1] else ""}}


def write_outputs(report: dict[str, Any], folder: Path) -> list[str]:
    """`probe.json` and `probe.png` into `folder`, each written atomically; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "probe.json", json.dumps(json_safe(report), indent=1))
    plot_probe(report["layers"], folder / "probe.png", title=f"Is a name real? Linear probe on {report['model']} "
               f"({report['n_real']} real, {report['n_fake']} made-up, {report['folds']}-fold by entity)")
    return ["probe.json", "probe.png"]


def run(config: ProbeConfig, *, force: bool = False, backbone: Any = None) -> Path:
    """Write `<out>/probe.json`, `probe.png`, `config.json` and `manifest.json` (last); skipped when done."""
    from latentrm.models import load_backbone, resolve_model

    check_config(config)  # before resolving the model: a bad --folds fails at once
    folder = Path(config.out)
    revision = backbone.revision if backbone is not None else resolve_model(config.model).revision
    num_layers = backbone.num_layers if backbone is not None else model_num_layers(config.model)
    layers = check_config(config, num_layers)
    key = _key(config, revision, layers)
    if not force and is_done(folder, key):
        return folder
    forget(folder)
    timer = Timer()
    if backbone is None:
        backbone = load_backbone(config.model, dtype=config.dtype, device=config.device)
    report = {**compute(config, backbone, layers), "seconds": timer.seconds()}
    written = write_outputs(report, folder)
    begin(folder, "probe", key, config)
    write_manifest(folder, "probe", key, config, outputs=[*written, "config.json"],
                   summary={"best_layer": report["best_layer"], "best_accuracy": round(report["best_accuracy"], 3)},
                   seconds=timer.seconds())
    return folder


# --------------------------------------------------------------------------- the audit's `backbone` probe


def backbone_probe(ctx: AuditContext) -> ProbeResult:
    """The probe on the reward model's own backbone (every third layer, the last and the head's layer).

    Opt-in (`--probes all,backbone`): it runs a forward per name, which the other probes do not need. The
    audit stage writes its report to `audit/probe.json` and `audit/probe.png`.
    """
    rm = ctx.rm
    if rm is None or getattr(rm, "backbone", None) is None:
        return ProbeResult("backbone", "skip", "no reward model with a backbone to probe (a plain scorer)")
    backbone = rm.backbone
    layers = sorted({*resolve_probe_layers("every3", backbone.num_layers), *(int(x) for x in rm.layers)})
    config = ProbeConfig(model=str(backbone.spec), layers=tuple(layers), seed=ctx.seed)
    report = compute(config, backbone, layers)
    by_layer = {row["layer"]: row for row in report["layers"]}
    head = by_layer.get(int(rm.layer))
    summary = (f"real vs made-up name, decoded from the last prompt token: best layer {report['best_layer']} "
               f"accuracy {report['best_accuracy']:.3f} (AUROC {report['best_auroc']:.3f})")
    if head is not None:
        summary += f"; at the head's layer {rm.layer}: {head['accuracy']:.3f}"
    return ProbeResult("backbone", "info", summary + f"; majority class {report['layers'][0]['majority']:.2f}",
                       report)


# --------------------------------------------------------------------------- plot and console table


def plot_probe(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Accuracy and AUROC (fold mean, ±1 std band) against layer, with the majority-class baseline."""
    from latentrm.audit.plots import _pyplot, _save

    plt = _pyplot()
    layers = [r["layer"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for metric, colour in (("accuracy", "tab:blue"), ("auroc", "tab:orange")):
        mean = np.array([r[metric] for r in rows], dtype=float)
        std = np.array([r[f"{metric}_std"] for r in rows], dtype=float)
        ax.plot(layers, mean, marker="o", color=colour, label=f"CV {metric}")
        ax.fill_between(layers, mean - std, mean + std, color=colour, alpha=0.15)
    ax.plot(layers, [r["majority"] for r in rows], linestyle="--", color="grey", label="majority class")
    ax.set_xlabel("layer (block output; the state at the last prompt token)")
    ax.set_ylabel("held-out score")
    ax.set_ylim(0.4, 1.02)
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def probe_table(report: dict[str, Any]) -> Any:
    """A rich table: one row per layer (accuracy ± std, AUROC ± std, majority), the best layer starred."""
    from rich.table import Table

    table = Table(title=f"Backbone probe: real vs made-up name, {report['folds']}-fold CV by entity "
                        f"({report['n_real']} real, {report['n_fake']} made-up)")
    baselines = report.get("baselines") or {}
    for column in ("layer", "accuracy", "AUROC", "majority", *(["AUROC - name string", "AUROC - embeddings"]
                                                                if baselines else [])):
        table.add_column(column, justify="right")
    for name, row in baselines.items():
        table.add_row(f"{name} (baseline)", f"{row['accuracy']:.3f} ± {row['accuracy_std']:.3f}",
                      f"{row['auroc']:.3f} ± {row['auroc_std']:.3f}", f"{row['majority']:.3f}",
                      *(["", ""] if baselines else []))
    for row in report["layers"]:
        star = " *" if row["layer"] == report["best_layer"] else ""
        margins = [f"{row['margin_surface']:+.3f}", f"{row['margin_embedding']:+.3f}"] if baselines else []
        table.add_row(f"{row['layer']}{star}", f"{row['accuracy']:.3f} ± {row['accuracy_std']:.3f}",
                      f"{row['auroc']:.3f} ± {row['auroc_std']:.3f}", f"{row['majority']:.3f}", *margins)
    return table
