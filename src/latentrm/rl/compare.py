"""`latentrm rl compare`: the reward-design experiment, one row per policy.

    latentrm rl compare --pairs runs/data/pairs.parquet --rm runs/ka/rm --run-dir runs/compare

Same seed, prompts, reward model and step budget for every arm:
1. `raw` + natural mix, imbalanced to `fake_share` (default 0.75 made-up people: the method's
   degenerate setting);
2. `raw` + balanced;
3. `calibrated` + balanced;
4. `quantile_match` + balanced;
   (`calibrated_balanced_masked`, on request: arm 3 with TRL's `mask_truncated_completions`);
5. DPO, IPO and KTO on the same pairs from the same start policy (`rl/baselines.py`).
With `--warm-start kto` (or dpo, ipo) that baseline is trained first and every GRPO arm starts
from its policy: GRPO can only reweight what the policy samples, and a base policy that never
hedges gives it no hedge to favour.
Every policy and the base model are then evaluated by the eval stage on `heldout` and
`false_premise` (rules judge), and, given `--eval-qa my_qa.jsonl`, on the user's short-answer
questions (reference judge). `compare/table.md` holds every rate with its Wilson interval and
k/n, then precision and not-attempted on the qa set when there is one (a policy that learned to
refuse everywhere shows there as fewer correct answers, not as a better policy), mean entropy,
distinct-2 and mean length; `compare/*.png` the rates, reward and entropy over steps. Each piece
is its own skipping stage, so a rerun redoes only what changed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.eval.metrics import headline_labels

ARMS: dict[str, dict[str, Any]] = {
    "raw_natural": {"shaper": "raw", "mix": "natural"},
    "raw_balanced": {"shaper": "raw", "mix": "balanced"},
    "calibrated_balanced": {"shaper": "calibrated", "mix": "balanced"},
    "quantile_match_balanced": {"shaper": "quantile_match", "mix": "balanced"},
    # not in the default list: the calibrated arm with TRL's mask_truncated_completions, to measure masking
    "calibrated_balanced_masked": {"shaper": "calibrated", "mix": "balanced", "mask_truncated": True},
}
QA_COLUMNS = ("precision", "not_attempted")  # from the qa set's `qa` block, shown when a policy has one


@dataclass(frozen=True)
class CompareConfig:
    pairs: str
    rm: str
    run_dir: str = "runs/compare"
    preset: str = "cpu-small"
    rl_sets: dict[str, Any] = field(default_factory=dict)  # RLConfig overrides for every arm
    arms: tuple[str, ...] = tuple(ARMS)
    baselines: tuple[str, ...] = ("dpo", "ipo", "kto")
    fake_share: float = 0.75  # the natural arm's imbalance
    seeds: tuple[int, ...] = (0,)
    eval_n: int = 40  # held-out people per class in the final evaluation
    eval_false_premise: int = 40
    eval_max_new_tokens: int = 64
    eval_qa: str | None = None  # a user JSONL of qa questions, graded by the reference judge
    baseline_lr: float = 5e-6
    baseline_batch_size: int = 8
    warm_start: str | None = None  # sft | dpo | ipo | kto: train it first; every GRPO arm starts from its policy
    warm_start_steps: int = 30  # the quick preset's warm start: 30 steps at 2e-5 (not the RL step count)
    warm_start_lr: float = 2e-5
    policy: str | None = None  # a ready start policy (e.g. a pipeline's warm_start/baseline-sft/policy)

    def validate(self) -> CompareConfig:
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown:
            raise LatentrmError(f"--arms: unknown arm(s) {', '.join(unknown)}; use {', '.join(ARMS)}")
        from latentrm.rl.baselines import METHODS

        if self.warm_start is not None and self.warm_start not in METHODS:
            raise LatentrmError(f"--warm-start {self.warm_start!r}: use one of {', '.join(METHODS)}")
        if self.warm_start is not None and self.policy is not None:
            raise LatentrmError("--warm-start trains a start policy and --policy gives one; pass one of them")
        if self.warm_start_steps < 1 or not (math.isfinite(self.warm_start_lr) and self.warm_start_lr > 0) \
                or not (math.isfinite(self.baseline_lr) and self.baseline_lr > 0):
            raise LatentrmError("--warm-start-steps must be >= 1, and --warm-start-lr and --baseline-lr finite "
                                "and > 0")
        owned = sorted(set(self.rl_sets) & {"shaper", "mix", "fake_share"})
        if owned:
            raise LatentrmError(f"--set {owned[0]}: every arm sets its own shaper and mix; choose arms with --arms "
                                "instead")
        if not self.arms and not self.baselines:
            raise LatentrmError("--arms and --baselines are both empty: nothing to train; name at least one")
        if self.policy is not None:
            from latentrm.models import resolve_model

            try:
                resolve_model(self.policy)
            except LatentrmError as exc:
                raise LatentrmError(f"--policy: {exc}") from None
        for arm in self.arms:  # every arm's RL config, checked before the first one trains
            rl_config(self, arm, self.seeds[0] if self.seeds else 0)
        bad = [b for b in self.baselines if b not in METHODS]
        if bad:
            raise LatentrmError(f"--baselines: unknown method(s) {', '.join(bad)}; use {', '.join(METHODS)}")
        if not 0 < self.fake_share < 1:
            raise LatentrmError(f"--fake-share {self.fake_share}: give a share strictly between 0 and 1")
        if self.eval_n < 1 or self.eval_false_premise < 0 or self.eval_max_new_tokens < 1 or not self.seeds:
            raise LatentrmError("eval_n and eval_max_new_tokens must be >= 1, eval_false_premise >= 0, and at "
                                "least one seed given")
        if self.eval_qa:  # read it now, not after hours of training
            from latentrm.eval.sets import load_user_set
            from latentrm.judges import REFERENCE_KINDS

            if not any(item.kind in REFERENCE_KINDS for item in load_user_set(self.eval_qa)):
                raise LatentrmError(f"--eval-qa {self.eval_qa}: has no qa questions (lines with \"kind\": \"qa\")")
        return self


def recipe_of(config: CompareConfig) -> str:
    """The recipe every arm trains and is judged under: `--set recipe=...` (an RLConfig field), else the flagship."""
    from latentrm.data.recipes import DEFAULT_RECIPE

    return str(config.rl_sets.get("recipe") or DEFAULT_RECIPE)


def _skewed(config: CompareConfig) -> str:
    """The class whose share the natural arm skews ("fake" made-up people, "false_claim" false claims)."""
    from latentrm.data.recipes import load_recipe

    return load_recipe(recipe_of(config)).skewed_class


def rl_config(config: CompareConfig, arm: str, seed: int, policy: str | None = None) -> Any:
    """The arm's RLConfig; `policy` (a warm start) replaces the start policy of the preset and `--set`."""
    from latentrm.rl.grpo_config import build_config

    overrides = dict(ARMS[arm])
    if overrides["mix"] == "natural":
        overrides["fake_share"] = config.fake_share
    if policy is not None:
        overrides["policy"] = policy
    return build_config(config.preset, dict(config.rl_sets), pairs=config.pairs, rm=config.rm,
                        run_dir=str(Path(config.run_dir) / f"{arm}-s{seed}"), seed=seed, **overrides)


def _baseline(config: CompareConfig, method: str, policy: str, steps: int, base_rl: Any, log: Any) -> Path:
    from latentrm.rl.baselines import BaselineConfig
    from latentrm.rl.baselines import run as run_baseline

    return run_baseline(BaselineConfig(method=method, pairs=config.pairs, policy=policy, run_dir=config.run_dir,
                                       steps=steps, batch_size=config.baseline_batch_size,
                                       learning_rate=config.baseline_lr, lora=bool(base_rl and base_rl.lora),
                                       seed=config.seeds[0], threads=base_rl.threads if base_rl else None), log=log)


def evaluate_policy(config: CompareConfig, name: str, model: str, base_seed: int = 0) -> dict[str, Any]:
    """Held-out and false-premise metrics of one policy, through the eval stage (skips when done)."""
    from latentrm.eval.runner import EvalConfig
    from latentrm.eval.runner import run as run_eval

    out = Path(config.run_dir) / "eval" / name
    results = {}
    for eval_set, extra in (("heldout", {"n_real": config.eval_n, "n_fake": config.eval_n,
                                         "exclude_pairs": config.pairs}),
                            ("false_premise", {"limit": config.eval_false_premise or None})):
        if eval_set == "false_premise" and not config.eval_false_premise:
            continue
        folder = run_eval(EvalConfig(model=model, eval_set=eval_set, max_new_tokens=config.eval_max_new_tokens,
                                     seed=base_seed, out=str(out), recipe=recipe_of(config), **extra))
        results[eval_set] = json.loads((folder / "metrics.json").read_text())
    if config.eval_qa:
        folder = run_eval(EvalConfig(model=model, eval_set=config.eval_qa, judge="reference",
                                     max_new_tokens=config.eval_max_new_tokens, seed=base_seed, out=str(out)))
        results["qa"] = json.loads((folder / "metrics.json").read_text())
    return results


def run(config: CompareConfig, *, log: Any = print) -> Path:
    """Train every arm and baseline, evaluate them and the base model, write the table and plots."""
    from latentrm.io import atomic_write_text
    from latentrm.rl import grpo_trainer

    config.validate()
    out = Path(config.run_dir) / "compare"
    policies: dict[str, dict[str, Any]] = {}
    base_rl = rl_config(config, config.arms[0], config.seeds[0]) if config.arms else None
    start_policy = base_rl.policy if base_rl else "embedded"
    steps = base_rl.steps if base_rl else None
    warm = config.policy
    if config.warm_start:  # e.g. SFT first, so the GRPO arms start from a policy that sometimes hedges
        log(f"== warm start: {config.warm_start} ({config.warm_start_steps} steps at {config.warm_start_lr:g})")
        folder = _baseline(replace(config, baseline_lr=config.warm_start_lr), config.warm_start,
                           start_policy or "embedded", config.warm_start_steps, base_rl, log)
        warm = str(folder / "policy")
        policies[f"{config.warm_start}-warm"] = {"arm": config.warm_start, "seed": config.seeds[0],
                                                         "model": warm, "kind": "warm_start"}
    for seed in config.seeds:
        for arm in config.arms:
            rl = rl_config(config, arm, seed, policy=warm)
            log(f"== {arm} (seed {seed})")
            folder = grpo_trainer.run(rl, log=log)
            policies[f"{arm}-s{seed}"] = {"arm": arm, "seed": seed, "model": str(folder / "policy"),
                                          "metrics": str(folder / "metrics.jsonl"), "kind": "rl"}
    for method in config.baselines:
        if method == config.warm_start:  # the same run: its row is the warm-start row
            continue
        log(f"== baseline {method}")
        folder = _baseline(config, method, start_policy or "embedded", steps or 30, base_rl, log)
        policies[method] = {"arm": method, "seed": config.seeds[0], "model": str(folder / "policy"),
                            "kind": "baseline"}
    rows = []
    for name, entry in {"base": {"arm": "base", "seed": None, "model": start_policy, "kind": "base"},
                        **policies}.items():
        log(f"== evaluating {name}")
        metrics = evaluate_policy(config, name, str(entry["model"]))
        rows.append({"name": name, **entry, "eval": metrics})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps({"config": asdict(config), "rows": rows}, indent=1,
                                                       default=str))
    return render(config.run_dir)  # table.md, the dynamics table and the plots, from the files just written


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("rate") is None:
        return "n/a"
    return f"{entry['rate']:.1%} [{entry['lo']:.1%}, {entry['hi']:.1%}] ({entry['k']}/{entry['n']})"


def compare_table(rows: list[dict[str, Any]], config: CompareConfig) -> str:
    """Markdown: one row per policy, every rate with its Wilson interval and k/n."""
    with_qa = any((row["eval"].get("qa") or {}).get("qa") for row in rows)
    rate_columns = headline_labels(*(row["eval"].get("heldout") for row in rows))
    header = ["policy", *rate_columns, "agrees (false premise)", *([f"{c} (qa)" for c in QA_COLUMNS] if with_qa
                                                                    else []), "entropy", "distinct-2", "mean length"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
    for row in rows:
        held = row["eval"].get("heldout", {})
        premise = row["eval"].get("false_premise", {})
        diversity = held.get("diversity", {})
        cells = [row["name"]] + [_cell(held.get("headline", {}).get(c)) for c in rate_columns]
        cells.append(_cell(premise.get("rates", {}).get("agrees")) if premise else "n/a")
        if with_qa:
            qa = (row["eval"].get("qa") or {}).get("qa") or {}
            cells += [_cell(qa.get(c)) for c in QA_COLUMNS]
        for key, fmt in (("mean_entropy", ".2f"), ("distinct_2", ".3f"), ("mean_length_tokens", ".0f")):
            value = diversity.get(key)
            cells.append("n/a" if value is None else f"{value:{fmt}}")
        lines.append("| " + " | ".join(cells) + " |")
    skewed = _skewed(config)
    held_out = (f"{config.eval_n} made-up and {config.eval_n} real people" if skewed == "fake"
                else f"{config.eval_n} prompts per class about people")
    note = (f"\nHeld-out: {held_out} unseen in training; "
            f"false premise: {config.eval_false_premise} questions; rules judge; Wilson 95% intervals. "
            f"`raw_natural` trains on a {config.fake_share:.0%} {'made-up-person' if skewed == 'fake' else skewed} mix."
            + (f" Every GRPO arm starts from the {config.warm_start} policy (row `{config.warm_start}-warm`, trained "
               f"from the base model); the base row and the other baselines start from the base model."
               if config.warm_start else "")
            + (f" qa: {config.eval_qa}, reference judge; precision = correct / attempted." if with_qa else "")
            + "\n")
    return "\n".join(lines) + "\n" + note


def dynamics_table(rows: list[dict[str, Any]], recipe: str | None = None) -> str:
    """Per RL arm, start -> end of training: shaped reward, raw score, entropy, length, truncated share,
    artifact shares and the live judge's lead summary rate (the recipe's; the flagship's when None), with the
    step time (from metrics.jsonl)."""
    from latentrm.data.recipes import DEFAULT_RECIPE, load_recipe
    from latentrm.rl.plots import read_metrics

    the_recipe = load_recipe(recipe or DEFAULT_RECIPE)
    live = the_recipe.judging.summary[0]  # as the live judge sees it on training samples
    skewed = the_recipe.skewed_class  # made-up people, false claims: where a hedge is the behaviour
    header = ["arm", "s/step", "reward", "raw score", "entropy", "truncated", "padding", "sign-off", "repetition",
              f"hedge ({skewed})", f"{live} (train)"]
    keys = ["reward", "latent/raw_mean", "entropy", "truncated_share", "artifacts/padding", "artifacts/sign_off",
            "artifacts/repetition", f"artifacts/hedge_{skewed}", f"train_judge/{live}"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
    for row in rows:
        if row.get("kind") != "rl":
            continue
        metrics_path = Path(row["metrics"])
        train = [r for r in read_metrics(metrics_path) if r.get("kind") == "train"]
        if not train:
            continue
        summary_path = metrics_path.parent / "summary.json"
        per_step = json.loads(summary_path.read_text()).get("seconds_per_step") if summary_path.exists() else None
        head, tail = train[: max(1, len(train) // 4)], train[-max(1, len(train) // 4):]  # first and last quarter

        def mean(part: list[dict[str, Any]], key: str) -> float | None:
            values = [r[key] for r in part if isinstance(r.get(key), int | float)]
            return sum(values) / len(values) if values else None

        cells = [row["name"], f"{per_step:.1f}" if per_step else "n/a"]
        for key in keys:
            a, b = mean(head, key), mean(tail, key)
            cells.append("n/a" if a is None or b is None else f"{a:.2f} -> {b:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return ("\n".join(lines) + "\n\nEach cell: mean over the first quarter of the logged steps -> mean over the "
            "last quarter.\n")


def render(run_dir: str | Path) -> Path:
    """Re-render compare/table.md, the dynamics table and the plots from the files a compare run wrote."""
    from latentrm.io import atomic_write_text
    from latentrm.rl.plots import curves

    out = Path(run_dir) / "compare"
    results_path = out / "results.json"
    if not results_path.exists():
        raise LatentrmError(f"{results_path} is missing; run `latentrm rl compare` first")
    results = json.loads(results_path.read_text())
    fields = {k: v for k, v in results["config"].items() if k in CompareConfig.__dataclass_fields__}
    for key in ("arms", "baselines", "seeds"):
        fields[key] = tuple(fields.get(key, ()))
    config = CompareConfig(**fields)
    rows = results["rows"]
    atomic_write_text(out / "table.md", compare_table(rows, config) + "\n" + dynamics_table(rows, recipe_of(config)))
    curves({r["name"]: Path(r["metrics"]) for r in rows if r.get("kind") == "rl"}, out)
    return out
