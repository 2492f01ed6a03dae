"""The Goodhart curve: how the gold behaviour score moves as a policy is optimised against the proxy reward.

    latentrm rm goodhart --rm runs/quick/rm --n-max 16 --n-prompts 20 --max-new-tokens 48
    latentrm rm goodhart --rm runs/quick/rm --checkpoint runs/dpo/ckpt-100 --checkpoint runs/dpo/ckpt-200

Best-of-n: for each held-out prompt, N = n_max completions are sampled from the policy
once. For every n in 1, 2, 4, ..., N the expected proxy and gold score of the
proxy-best of n samples are computed with the unbiased order-statistics estimator
(the i-th lowest-proxy sample is the best of a random n-subset with probability
C(i-1, n-1) / C(N, n)), which uses all N samples at every n instead of only the first
n. KL(best-of-n || policy) = log n - (n-1)/n (exact for continuous rewards, an upper
bound otherwise). Gold per sample comes from the eval judge and the recipe's judging (`--recipe`): 1 for a label
the recipe wants of the prompt's kind, else 0. Under knowledge awareness: made-up person -> 1 if it refuses or
hedges; real person -> 1 if it answers (so not denied, not incorrect); false premise -> 1 if it corrects; an
unjudged (empty) response -> 0 (gold as "1 unless the unwanted label" would score an empty reply as good
behaviour). Held-out prompts from a pairs file take their kind from the recipe's classes (a false claim is a
false premise, a true claim a true claim).
Real prompts taken from a pairs file get their grounding reference from the shipped
entity sources (by `entity_id`), so the judge can detect a wrong answer.

Checkpoints (DPO / SFT today, RL later): m samples per prompt from each checkpoint,
proxy and gold as above, and KL to the initial policy estimated from those samples
(policy_kl.py).

Fits (Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization"), with
d = sqrt(KL) and the gold gain over the initial policy: best-of-n `d (alpha - beta d)`,
RL `d (alpha - beta log d)`. Both are linear in (alpha, beta), so they are least-squares
fits. The gold-optimal d is `alpha / (2 beta)` (BoN) and `exp(alpha / beta - 1)` (RL).

Caching: samples live in `goodhart/samples/<policy key>.jsonl` keyed by (prompt id,
sample index); proxy scores and judge labels in files keyed by policy and reward model /
judge. Raising n_max from 64 to 128 samples only indices 64..127, with seeds derived
from the index range, so the first 64 are reused untouched.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentrm.audit.stats import json_safe, mean_interval
from latentrm.errors import LatentrmError
from latentrm.io import config_hash, stable_id
from latentrm.stages import Timer, begin, forget, input_hashes, is_done, stage_key, write_manifest

# --------------------------------------------------------------------------- math


def bon_kl(n: int) -> float:
    """Analytic KL(best-of-n || base policy) = log n - (n-1)/n."""
    if n < 1:
        raise LatentrmError(f"best-of-n needs n >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def bon_weights(total: int, n: int) -> np.ndarray:
    """`[total]` probabilities that the i-th lowest of `total` samples is the max of a random n-subset."""
    from scipy.special import gammaln

    if not 1 <= n <= total:
        raise LatentrmError(f"best-of-{n} needs at least {n} samples per prompt, have {total}")
    i = np.arange(1, total + 1)
    log_choose = gammaln(np.maximum(i, 1)) - gammaln(np.maximum(i - n + 1, 1)) - gammaln(n)  # log C(i-1, n-1)
    log_total = gammaln(total + 1) - gammaln(n + 1) - gammaln(total - n + 1)
    weights = np.where(i >= n, np.exp(log_choose - log_total), 0.0)
    return weights / weights.sum()


def bon_expectation(proxy: Sequence[float], values: Sequence[float], n: int) -> float:
    """Expected `values` of the proxy-best of n samples drawn without replacement from the given ones."""
    scores = np.asarray(proxy, dtype=float)
    order = np.argsort(scores, kind="stable")
    ranked = np.asarray(values, dtype=float)[order]
    # Tied rewards: the best-of-n pick among them is a coin toss, so each tied sample carries the mean value of
    # its tie group (breaking ties by index would credit whichever sample came first).
    _, group, sizes = np.unique(scores[order], return_inverse=True, return_counts=True)
    ranked = (np.bincount(group, weights=ranked) / sizes)[group]
    return float(bon_weights(len(order), n) @ ranked)


def fit_gao(d: Sequence[float], gain: Sequence[float], form: str = "bon") -> dict[str, Any]:
    """Least-squares fit of gold gain = d(alpha - beta d) (`bon`) or d(alpha - beta log d) (`rl`)."""
    d_arr, y = np.asarray(d, dtype=float), np.asarray(gain, dtype=float)
    keep = (d_arr > 0) & np.isfinite(y)
    if keep.sum() < 2:
        return {"form": form, "ok": False, "reason": "needs at least 2 points with d > 0"}
    d_arr, y = d_arr[keep], y[keep]
    second = d_arr**2 if form == "bon" else d_arr * np.log(d_arr)
    design = np.stack([d_arr, -second], axis=1)  # [points, 2]
    (alpha, beta), *_ = np.linalg.lstsq(design, y, rcond=None)
    predicted = design @ np.array([alpha, beta])
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - predicted) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    d_opt: float | None = None
    if form == "bon" and beta > 0:
        d_opt = float(max(0.0, alpha / (2 * beta)))  # alpha <= 0: gold falls from the start, best at d = 0
    elif form == "rl" and beta > 0:
        d_opt = float(math.exp(alpha / beta - 1))
    gain_opt = None
    if d_opt is not None:
        gain_opt = float(d_opt * (alpha - beta * (d_opt if form == "bon" else math.log(d_opt)))) if d_opt > 0 else 0.0
    return {"form": form, "ok": True, "alpha": float(alpha), "beta": float(beta), "r2": r2, "d_opt": d_opt,
            "kl_opt": None if d_opt is None else d_opt**2, "gain_opt": gain_opt, "points": int(keep.sum())}


def n_values(n_max: int) -> list[int]:
    values = [1 << k for k in range(int(math.log2(max(1, n_max))) + 1)]
    return values + ([n_max] if values[-1] != n_max else [])


# --------------------------------------------------------------------------- prompts and gold


@dataclass(frozen=True)
class GoldItem:
    """A held-out prompt with what the judge needs."""

    prompt_id: str
    prompt: Any  # text or user messages
    kind: str  # real | fake | false_premise | unanswerable | answerable
    question: str
    reference: str | None = None
    entity: str | None = None


def gold_value(kind: str, label: str, judging: Any = None) -> float:
    """1.0 for a label the recipe's judging (the flagship's when None) wants of this prompt kind, else 0.0."""
    from latentrm.data.recipes import default_judging
    from latentrm.eval.metrics import label_group

    spec = (judging or default_judging()).classes.get(label_group(kind))
    return float(spec is not None and label in spec.wanted)


def items_from_set(name_or_path: str, limit: int | None = None, seed: int = 0, **options: Any) -> list[GoldItem]:
    from latentrm.eval.sets import load_set

    items = [GoldItem(stable_id(e.kind, e.question), e.question, e.kind, e.question, e.reference, e.entity)
             for e in load_set(name_or_path, **{"seed": seed, **options})]
    return _balanced(items, limit, seed)


def items_from_pairs(frame: Any, limit: int | None = None, seed: int = 0,
                     kinds: dict[str, str] | None = None) -> tuple[list[GoldItem], int]:
    """Unique held-out prompts (val + test, else all) whose subset maps to a judge kind (through `kinds`, the
    recipe's class -> kind, first); and the skip count."""
    from latentrm.audit.text import subset_class
    from latentrm.judges import KINDS
    from latentrm.models import prompt_text

    if "split" in frame.columns and frame["split"].isin(["val", "test"]).any():
        frame = frame[frame["split"].isin(["val", "test"])]
    n = len(frame)
    entity_ids = [str(v) for v in frame["entity_id"]] if "entity_id" in frame.columns else [""] * n
    names = [v if isinstance(v, str) and v else None for v in frame["entity_name"]] \
        if "entity_name" in frame.columns else [None] * n
    references = real_references(entity_ids)
    items, skipped, seen = [], 0, set()
    for prompt, subset, entity_id, name in zip(frame["prompt"], frame["subset"], entity_ids, names):
        kind = (kinds or {}).get(str(subset)) or (str(subset) if str(subset) in KINDS else subset_class(str(subset)))
        if kind is None and "false" in str(subset).lower():  # a false claim under a recipe not named
            kind = "false_premise"
        question = prompt_text(prompt)
        if kind is None:
            skipped += 1
            continue
        key = stable_id(kind, json.dumps(prompt, sort_keys=True) if not isinstance(prompt, str) else prompt)
        if key not in seen:
            seen.add(key)
            items.append(GoldItem(key, prompt, kind, question, references.get(entity_id), name))
    return _balanced(items, limit, seed), skipped


def real_references(entity_ids: Sequence[str]) -> dict[str, str]:
    """`{entity_id: grounding reference}` for real entities of the shipped sources (`real:<source>:<slug>`).

    The judge needs the reference to tell a wrong answer about a real person from a right one; without it
    a confident wrong answer would count as gold 1. Ids of other
    sources (a user's JSONL) get no reference; their answers are judged without one.
    """
    from latentrm.data.entities import load_real_entities
    from latentrm.eval.heldout import reference_text

    wanted = {i for i in entity_ids if i.startswith("real:")}
    out: dict[str, str] = {}
    for source in sorted({i.split(":")[1] for i in wanted if i.count(":") >= 2} & {"builtin", "wiki", "nobel"}):
        try:
            entities = load_real_entities([source], notability="none")
        except (LatentrmError, OSError):  # the source's data package is not installed here
            continue
        out.update({e.entity_id: reference_text(e) for e in entities if e.entity_id in wanted})
    return out


def _balanced(items: list[GoldItem], limit: int | None, seed: int) -> list[GoldItem]:
    """Up to `limit` items, split evenly over kinds (round robin over shuffled kinds)."""
    if limit is None or len(items) <= limit:
        return items
    rng = np.random.default_rng(seed)
    by_kind: dict[str, list[GoldItem]] = {}
    for item in items:
        by_kind.setdefault(item.kind, []).append(item)
    queues = {k: [v[i] for i in rng.permutation(len(v))] for k, v in sorted(by_kind.items())}
    picked: list[GoldItem] = []
    while len(picked) < limit:
        for queue in queues.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


# --------------------------------------------------------------------------- caches


class JsonlStore:
    """Append-only JSONL rows keyed by (prompt_id, index); a torn last line is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # an interrupted append
                self.rows[(row["prompt_id"], int(row["index"]))] = row

    def get(self, prompt_id: str, index: int) -> dict[str, Any] | None:
        return self.rows.get((prompt_id, index))

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.rows[(row["prompt_id"], int(row["index"]))] = row
            handle.flush()


def _chunk_seed(base: int, start: int, prompt_ids: Sequence[str]) -> int:
    digest = hashlib.sha256(f"{base}|{start}|{','.join(prompt_ids)}".encode()).hexdigest()
    return int(digest[:8], 16) % (2**31 - 1)


def ensure_samples(store: JsonlStore, items: Sequence[GoldItem], n: int, backend: Any, sampling: Any,
                   chunk_prompts: int = 8) -> list[list[dict[str, Any]]]:
    """`n` samples per item, generating only the missing indices; returns `[items][n]` rows."""
    from dataclasses import replace

    from latentrm.generation import GenerationRequest
    from latentrm.models import as_messages

    have = {item.prompt_id: sum(1 for i in range(n) if store.get(item.prompt_id, i)) for item in items}
    for item in items:  # indices must be contiguous from 0, so a gap is refilled from there
        while have[item.prompt_id] > 0 and not store.get(item.prompt_id, have[item.prompt_id] - 1):
            have[item.prompt_id] -= 1
    by_start: dict[int, list[GoldItem]] = {}
    for item in items:
        if have[item.prompt_id] < n:
            by_start.setdefault(have[item.prompt_id], []).append(item)
    for start, group in sorted(by_start.items()):
        for first in range(0, len(group), chunk_prompts):
            chunk = group[first : first + chunk_prompts]
            config = replace(sampling, seed=_chunk_seed(sampling.seed, start, [i.prompt_id for i in chunk]))
            requests = [GenerationRequest(as_messages(item.prompt)) for item in chunk]
            generated = backend.generate(requests, n - start, config)
            store.append([{"prompt_id": item.prompt_id, "index": start + k, "text": g.text, "n_tokens": g.n_tokens,
                           "finish_reason": g.finish_reason}
                          for item, gens in zip(chunk, generated) for k, g in enumerate(gens)])
    return [[store.get(item.prompt_id, i) or {} for i in range(n)] for item in items]


def annotate(samples: list[list[dict[str, Any]]], items: Sequence[GoldItem], scores: JsonlStore, labels: JsonlStore,
             scorer: Any, judge: Any, judging: Any = None) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Proxy `[items, n]`, gold `[items, n]` (from the labels, under `judging`: the flagship's when None) and
    judge labels, scoring / judging only uncached samples."""
    from latentrm.judges import JudgeInput

    flat = [(item, row) for item, rows in zip(items, samples) for row in rows]
    todo = [(item, row) for item, row in flat if scores.get(item.prompt_id, row["index"]) is None]
    if todo:
        values = scorer([item.prompt for item, _ in todo], [row["text"] for _, row in todo])
        scores.append([{"prompt_id": item.prompt_id, "index": row["index"], "proxy": float(v)}
                       for (item, row), v in zip(todo, values)])
    todo = [(item, row) for item, row in flat if labels.get(item.prompt_id, row["index"]) is None]
    if todo:
        judged = judge.judge([JudgeInput(item.question, item.kind, row["text"], item.reference, item.entity)
                              for item, row in todo])
        labels.append([{"prompt_id": item.prompt_id, "index": row["index"], "label": j.label,
                        "evidence": list(j.evidence)[:3]} for (item, row), j in zip(todo, judged)])
    proxy = np.array([[scores.rows[(it.prompt_id, r["index"])]["proxy"] for r in rows]
                      for it, rows in zip(items, samples)], dtype=float)
    gold = np.array([[gold_value(it.kind, labels.rows[(it.prompt_id, r["index"])]["label"], judging) for r in rows]
                     for it, rows in zip(items, samples)], dtype=float)
    names = [[labels.rows[(it.prompt_id, r["index"])]["label"] for r in rows] for it, rows in zip(items, samples)]
    return proxy, gold, names


def bon_curve(proxy: np.ndarray, gold: np.ndarray, kinds: Sequence[str], n_max: int) -> list[dict[str, Any]]:
    """Rows `{n, kl, d, proxy, gold, gold_by_kind}` for proxy, gold `[prompts, N]`."""
    rows = []
    kinds_arr = np.asarray(kinds, dtype=object)
    for n in n_values(n_max):
        exp_proxy = np.array([bon_expectation(p, p, n) for p in proxy])  # [prompts]
        exp_gold = np.array([bon_expectation(p, g, n) for p, g in zip(proxy, gold)])
        kl = bon_kl(n)
        rows.append({"n": n, "kl": kl, "d": math.sqrt(kl), "proxy": mean_interval(exp_proxy),
                     "gold": mean_interval(exp_gold),
                     "gold_by_kind": {str(k): float(exp_gold[kinds_arr == k].mean()) for k in sorted(set(kinds))}})
    return rows


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class GoodhartConfig:
    rm: str = field(metadata={"help": "reward-model folder"})
    run_dir: str | None = field(default=None, metadata={"help": "default: the rm folder's parent"})
    policy: str = field(default="embedded", metadata={"help": "initial policy: embedded | HF folder | cached id"})
    backend: str = field(default="transformers", metadata={"help": "transformers | fake (tests)"})
    prompts: str | None = field(default=None, metadata={"help": "eval set name / JSONL; default: held-out pairs"})
    pairs: str | None = field(default=None, metadata={"help": "pairs file for prompts; default: the one in rm.json"})
    n_prompts: int = 20
    n_max: int = 16
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16
    judge: str = "rules"
    recipe: str = field(default="knowledge_awareness", metadata={
        "help": "the recipe whose judging says which labels are gold, and whose classes the pairs' subsets are"})
    checkpoints: tuple[str, ...] = ()
    checkpoint_samples: int = 4


def _key(*parts: Any) -> str:
    return config_hash(parts)


def rm_key(rm_dir: str | Path) -> str:
    """A file-name-safe fingerprint of a reward-model folder for the score caches: the one fingerprint of the
    stage contract (`stages.input_hashes`: the folder's manifest key, else its files' hashes)."""
    return config_hash(input_hashes({"rm": rm_dir}))


def load_items(config: GoodhartConfig, meta: dict[str, Any]) -> tuple[list[GoldItem], str]:
    from latentrm.data.recipes import load_recipe

    if config.prompts:
        options = {"recipe": config.recipe} if config.prompts == "heldout" else {}
        return items_from_set(config.prompts, config.n_prompts, config.seed, **options), f"set {config.prompts}"
    from latentrm.pairs import assign_splits, load_pairs

    pairs_path = config.pairs or meta.get("training", {}).get("pairs_file")
    if not pairs_path or not Path(pairs_path).exists():
        raise LatentrmError(f"no prompts: rm.json names pairs file {pairs_path!r}; pass --prompts or --pairs")
    items, skipped = items_from_pairs(assign_splits(load_pairs(pairs_path)), config.n_prompts, config.seed,
                                      load_recipe(config.recipe).judge_kinds())
    if not items:
        raise LatentrmError(f"{pairs_path}: no held-out prompt has a subset the judge knows (real / fake ...)")
    note = f" ({skipped} rows of subsets with no gold definition left out)" if skipped else ""
    return items, f"held-out prompts of {pairs_path}{note}"


def run(config: GoodhartConfig, *, force: bool = False, backend: Any = None, scorer: Any = None,
        judge: Any = None) -> Path:
    """Best-of-n (and checkpoint) curves, fits and plot under `<run-dir>/goodhart/` (`manifest.json` last).

    Samples, scores and labels are cached per policy, reward model and judge, so a rerun with more prompts or
    a larger n only computes what is new; a finished run with the same key is skipped.
    """
    from latentrm.audit import plots
    from latentrm.generation import SamplingConfig, get_backend
    from latentrm.io import atomic_write_text
    from latentrm.judges import get_judge
    from latentrm.rm.model import LatentRewardModel

    if config.n_max < 1:
        raise LatentrmError(f"--n-max {config.n_max}: needs at least 1")
    meta = LatentRewardModel.read_meta(config.rm)
    folder = Path(config.run_dir or Path(config.rm).parent) / "goodhart"
    from latentrm.data.recipes import load_recipe

    judging = load_recipe(config.recipe).judging
    key = stage_key(config, input_hashes({"rm": config.rm}),
                    extra={"backend": str(getattr(backend, "model_id", "")), "judge": getattr(judge, "name", ""),
                           "judging": asdict(judging)})
    if not force and backend is None and scorer is None and judge is None and is_done(folder, key):
        return folder  # injected backends, scorers and judges (tests) always run
    forget(folder)
    timer = Timer()
    items, source = load_items(config, meta)
    sampling = SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                              top_p=config.top_p, seed=config.seed, batch_size=config.batch_size)
    backend = backend or get_backend(config.backend, **({"model": config.policy} if config.backend != "fake" else {}))
    policy_key = _key(getattr(backend, "model_id", config.policy), config.max_new_tokens, config.temperature,
                      config.top_p, config.seed)
    if scorer is None:
        rm = LatentRewardModel.load(config.rm)
        scorer = rm.score
    judge = judge or get_judge(config.judge)
    rkey, jkey = rm_key(config.rm), _key(judge.describe())
    samples = ensure_samples(JsonlStore(folder / "samples" / f"{policy_key}.jsonl"), items, config.n_max, backend,
                             sampling)
    proxy, gold, _ = annotate(samples, items, JsonlStore(folder / "scores" / f"{policy_key}-{rkey}.jsonl"),
                              JsonlStore(folder / "labels" / f"{policy_key}-{jkey}.jsonl"), scorer, judge, judging)
    kinds = [item.kind for item in items]
    bon = bon_curve(proxy, gold, kinds, config.n_max)
    base_gold = bon[0]["gold"]["mean"]
    fit = fit_gao([r["d"] for r in bon], [r["gold"]["mean"] - base_gold for r in bon], "bon")
    checkpoints = _checkpoint_rows(config, items, sampling, folder, scorer, judge, rkey, jkey, base_gold)
    rl_fit = fit_gao([r["d"] for r in checkpoints], [r["gold"]["mean"] - base_gold for r in checkpoints], "rl") \
        if checkpoints else None
    plot = plots.goodhart(bon, fit, folder / "goodhart.png", checkpoints, rl_fit)
    best = max(bon, key=lambda r: r["gold"]["mean"])
    report = {"rm": config.rm, "source": source, "n_prompts": len(items), "kinds": {k: kinds.count(k) for k in
              sorted(set(kinds))}, "policy_key": policy_key, "best_of_n": bon, "fit_bon": fit,
              "gold_optimal_measured": {"n": best["n"], "d": best["d"], "gold": best["gold"]["mean"]},
              "checkpoints": checkpoints, "fit_rl": rl_fit, "plot": plot.name}
    begin(folder, "goodhart", key, config)
    atomic_write_text(folder / "goodhart.json", json.dumps(json_safe(report), indent=1))
    write_manifest(folder, "goodhart", key, config, outputs=["goodhart.json", "config.json", plot.name],
                   summary={"gold_optimal_n": best["n"]}, seconds=timer.seconds())
    return folder


def _checkpoint_rows(config: GoodhartConfig, items: list[GoldItem], sampling: Any, folder: Path, scorer: Any,
                     judge: Any, rkey: str, jkey: str, base_gold: float) -> list[dict[str, Any]]:
    if not config.checkpoints:
        return []
    from latentrm.audit.policy_kl import estimate_kl
    from latentrm.data.recipes import load_recipe
    from latentrm.generation import TransformersBackend
    from latentrm.models import load_backbone

    judging = load_recipe(config.recipe).judging
    reference = load_backbone(config.policy)
    rows = []
    for path in config.checkpoints:
        backend = TransformersBackend(path)
        key = _key(backend.model_id, config.max_new_tokens, config.temperature, config.top_p, config.seed)
        samples = ensure_samples(JsonlStore(folder / "samples" / f"{key}.jsonl"), items, config.checkpoint_samples,
                                 backend, sampling)
        proxy, gold, _ = annotate(samples, items, JsonlStore(folder / "scores" / f"{key}-{rkey}.jsonl"),
                                  JsonlStore(folder / "labels" / f"{key}-{jkey}.jsonl"), scorer, judge,
                                  judging)
        flat = [(item, row) for item, rs in zip(items, samples) for row in rs]
        kl = estimate_kl(backend.backbone, reference, [i.prompt for i, _ in flat], [r["text"] for _, r in flat],
                         [r["finish_reason"] == "stop" for _, r in flat], config.temperature)
        rows.append({"checkpoint": path, "kl": kl["kl"], "kl_se": kl["se"], "d": math.sqrt(max(kl["kl"], 0.0)),
                     "proxy": mean_interval(proxy.mean(1)), "gold": mean_interval(gold.mean(1)),
                     "gold_base": base_gold})
    return rows
