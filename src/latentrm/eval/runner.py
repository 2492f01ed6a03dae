"""The eval stage: sample a policy on an eval set, judge every response, report rates.

What it does: `run(EvalConfig) -> Path` writes, under `<out>/eval/<set>/`,

- `responses.jsonl`: one row per response (question, kind, response, tokens,
  entropy, label, evidence, judge), appended chunk by chunk as responses are
  generated and judged, so a crash loses at most one chunk (a chunk whose judging
  fails is still written, unlabelled, and judged on resume);
- `metrics.json`: headline rates with Wilson 95% intervals, every label's rate,
  diversity (distinct-1/2, mean length, mean per-token entropy);
- `config.json`: the resolved config and the keys that make resuming safe.

Resuming: rows already in `responses.jsonl` (matched by item id and sample index)
are kept. If the policy, set or sampling changed, the run refuses (pass
`force=True`, the CLI's `--fresh`). A finished run with the same key (policy,
sampling, judge and items) is skipped through `manifest.json` (`latentrm.stages`). If only the judge changed, the kept responses are re-judged
without re-sampling.

The policy is a checkpoint directory, `embedded`, a cached hub id, or an
OpenAI-compatible endpoint. `evaluate(...)` is the in-memory core that the RL
stage can call during training.

Run it: `latentrm eval --model embedded --set heldout`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from latentrm.data.recipes import load_recipe
from latentrm.errors import LatentrmError
from latentrm.eval.metrics import compute_metrics
from latentrm.eval.sets import EvalItem, load_set, set_name
from latentrm.io import config_hash
from latentrm.judges import REFERENCE_KINDS, Judge, JudgeInput, get_judge
from latentrm.stages import begin, begun, forget, is_done, stage_key, write_manifest


@dataclass(frozen=True)
class EvalConfig:
    model: str | None = "embedded"  # checkpoint dir | "embedded" | cached hub id; ignored with endpoint
    endpoint: str | None = None  # OpenAI-compatible base URL, e.g. http://localhost:8000/v1
    model_name: str | None = None  # the served model's name at the endpoint
    endpoint_logprobs: int = 20  # top-k log-probs asked of the endpoint, for the entropy estimate; 0 = off
    eval_set: str = "heldout"  # heldout | false_premise | path/to/set.jsonl
    judge: str = "rules"
    judge_model: str | None = None  # llm judge: local model spec (default embedded)
    judge_endpoint: str | None = None  # llm judge: OpenAI-compatible endpoint
    judge_model_name: str | None = None
    n_real: int = 100  # heldout size per class
    n_fake: int = 100
    real: tuple[str, ...] = ("auto",)  # heldout: real entity sources (as in `latentrm data build --real`)
    exclude_pairs: str | None = None  # heldout: also hold out every entity named in this pairs file
    people: str = "all"  # heldout / false_premise: all | eval | select | check (disjoint parts, eval/heldout.py)
    samples: int = 1  # responses per question
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    batch_size: int = 16
    out: str | None = None  # run directory; default runs/<policy name>
    folder: str | None = None  # the exact output folder (the pipeline's eval/base/<set>); overrides out/eval/<set>
    limit: int | None = None  # only the first N questions (smoke runs)
    recipe: str = "knowledge_awareness"  # whose judging names the headline rates (a shipped name or a .yaml)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "policy"


def policy_label(config: EvalConfig) -> str:
    if config.endpoint:
        return config.model_name or "endpoint"
    return Path(config.model or "embedded").name


def output_dir(config: EvalConfig) -> Path:
    if config.folder:
        return Path(config.folder)
    root = Path(config.out) if config.out else Path("runs") / _slug(policy_label(config))
    return root / "eval" / _slug(set_name(config.eval_set))


def policy_id(config: EvalConfig) -> str:
    """What identifies the sampled policy: endpoint + model name, or the model spec + revision."""
    if config.endpoint:
        return f"openai:{config.model_name or 'default'}@{config.endpoint.rstrip('/')}"
    from latentrm.models import resolve_model

    resolved = resolve_model(config.model or "embedded")
    return f"{config.model}@{resolved.revision}"


def generation_key(config: EvalConfig, policy: str) -> str:
    # Set size options (n_real, n_fake, limit) are left out: rows are matched by item id, and an
    # item's question is a pure function of its id, so a bigger or smaller run reuses what exists.
    payload = {"policy": policy, "set": config.eval_set, "samples": config.samples,
               "max_new_tokens": config.max_new_tokens, "temperature": config.temperature,
               "top_p": config.top_p, "seed": config.seed}
    return config_hash(payload)


def build_judge(config: EvalConfig) -> Judge:
    """The configured judge. With `reference`, a judge model or endpoint becomes its llm fallback for the
    answers that string matching cannot decide."""
    if config.judge == "llm" or (config.judge == "reference" and (config.judge_model or config.judge_endpoint)):
        if config.judge_endpoint:
            check_endpoint(config.judge_endpoint, option="--judge-endpoint")
        llm = get_judge("llm", model=config.judge_model or "embedded", endpoint=config.judge_endpoint,
                        model_name=config.judge_model_name)
        return llm if config.judge == "llm" else get_judge("reference", fallback=llm)
    return get_judge(config.judge)


def check_judge_fits(items: Sequence[EvalItem], judge: Judge) -> None:
    """`qa` questions need a judge that reads references: refuse before anything is sampled."""
    graded = sum(1 for item in items if item.kind in REFERENCE_KINDS)
    if graded and judge.name == "rules":
        raise LatentrmError(f"the eval set has {graded} qa question(s), which are graded against their "
                            "references: pass --judge reference (or --judge llm)")


def check_endpoint(url: str, timeout: float = 5.0, option: str = "--endpoint") -> None:
    """Fail fast, in one line, when an OpenAI-compatible endpoint does not answer (any HTTP reply is fine)."""
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/models", timeout=timeout)
    except httpx.HTTPError as exc:
        raise LatentrmError(f"endpoint {url} is not reachable ({type(exc).__name__}); start the server "
                            f"or fix {option}") from exc


def build_backend(config: EvalConfig) -> Any:
    from latentrm.generation import get_backend

    if config.endpoint:
        check_endpoint(config.endpoint)
        return get_backend("openai", base_url=config.endpoint, model=config.model_name or "default",
                           api_key=os.environ.get("OPENAI_API_KEY"), top_logprobs=config.endpoint_logprobs)
    return get_backend("transformers", model=config.model or "embedded")


# --------------------------------------------------------------------------- core


def judge_inputs(rows: Sequence[dict[str, Any]]) -> list[JudgeInput]:
    return [JudgeInput(str(r["question"]), str(r["kind"]), str(r.get("response") or ""), r.get("reference"),
                       r.get("entity"), tuple(r.get("references") or ()), bool(r.get("answerable", True)))
            for r in rows]


def apply_judgments(rows: list[dict[str, Any]], judge: Judge) -> list[dict[str, Any]]:
    judgments = judge.judge(judge_inputs(rows))
    for row, judgment in zip(rows, judgments, strict=True):
        row["label"] = judgment.label
        row["evidence"] = list(judgment.evidence)
        row["judge"] = judge.name
    return rows


def evaluate(items: Sequence[EvalItem], backend: Any, judge: Judge, sampling: Any, *, samples: int = 1,
             chunk_size: int | None = None,
             on_rows: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Sample `samples` responses per item, judge them, return rows; `on_rows` sees each judged chunk."""
    from latentrm.generation import GenerationRequest

    chunk_size = chunk_size or max(1, sampling.batch_size * 2)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(items), chunk_size):
        chunk = list(items[start : start + chunk_size])
        requests = [GenerationRequest([{"role": "user", "content": item.question}]) for item in chunk]
        outputs = backend.generate(requests, samples, sampling)
        new_rows = []
        for item, generations in zip(chunk, outputs, strict=True):
            for sample, generation in enumerate(generations):
                new_rows.append({
                    "item_id": item.item_id, "sample": sample, "kind": item.kind, "question": item.question,
                    "entity": item.entity, "reference": item.reference, "response": generation.text,
                    "n_tokens": generation.n_tokens, "finish_reason": generation.finish_reason,
                    "mean_entropy": generation.mean_entropy, **({"meta": item.meta} if item.meta else {}),
                    **({"references": list(item.references), "answerable": item.answerable}
                       if item.kind in REFERENCE_KINDS else {}),
                })
        try:
            apply_judgments(new_rows, judge)
        except BaseException:
            if on_rows is not None:  # keep what was sampled: a resumed run judges it without re-sampling
                on_rows(new_rows)
            raise
        if on_rows is not None:
            on_rows(new_rows)
        rows.extend(new_rows)
    return rows


# --------------------------------------------------------------------------- files


def read_responses(path: Path) -> list[dict[str, Any]]:
    """Rows of an existing responses.jsonl; a torn last line (crash mid-write) is dropped."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise LatentrmError(f"{path}:{number}: corrupt row ({exc.msg}); delete the file or pass --fresh") from exc
    return rows


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    from latentrm.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def run(config: EvalConfig, *, force: bool = False, backend: Any = None, judge: Judge | None = None,
        items: Sequence[EvalItem] | None = None, replace_stale: bool = False) -> Path:
    """Run (or resume) one eval; returns the folder holding responses.jsonl and metrics.json.

    `force=True` discards earlier responses instead of resuming them. `replace_stale=True` (the pipeline, which
    owns its folders) discards responses of another policy, set or sampling config instead of refusing them.
    """
    from latentrm.generation import SamplingConfig
    from latentrm.io import atomic_write_text

    judge = judge or build_judge(config)  # unknown judge fails before anything is sampled
    if items is None:
        items = load_set(config.eval_set, n_real=config.n_real, n_fake=config.n_fake, seed=config.seed,
                         real=config.real, exclude_pairs=config.exclude_pairs, people=config.people,
                         recipe=config.recipe)
    items = list(items)[: config.limit] if config.limit else list(items)
    check_judge_fits(items, judge)
    policy = str(getattr(backend, "model_id", "")) if backend is not None else policy_id(config)
    key = generation_key(config, policy)
    folder = output_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    responses_path = folder / "responses.jsonl"
    judge_desc = judge.describe()
    judging = load_recipe(config.recipe).judging
    stage = stage_key(config, extra={"generation_key": key, "judge": judge_desc, "judging": asdict(judging),
                                     "items": config_hash([item.item_id for item in items])})
    if not force and is_done(folder, stage):
        return folder
    forget(folder)

    kept: list[dict[str, Any]] = []
    previous = begun(folder)
    if force:
        responses_path.unlink(missing_ok=True)
    elif replace_stale and responses_path.exists() and previous.get("generation_key") != key:
        responses_path.unlink()  # stale: another policy (a retrained RL stage), set or sampling config
    elif previous and responses_path.exists():
        if previous.get("generation_key") != key:
            raise LatentrmError(f"{folder} holds responses from a different policy, set or sampling config; "
                                "pass --fresh to overwrite or --out to write elsewhere")
        kept = read_responses(responses_path)
        if previous.get("judge") != judge_desc:
            kept = apply_judgments(kept, judge)  # same responses, new judge
            _write_rows(responses_path, kept)
        elif any(r.get("label") is None for r in kept):
            apply_judgments([r for r in kept if r.get("label") is None], judge)
            _write_rows(responses_path, kept)
        elif len(kept) != sum(1 for line in responses_path.read_text().splitlines() if line.strip()):
            _write_rows(responses_path, kept)  # drop a torn last line before appending
    elif responses_path.exists():
        responses_path.unlink()  # responses without a config.json cannot be trusted
    begin(folder, "eval", stage, config, policy=policy, generation_key=key, judge=judge_desc, n_items=len(items))

    wanted = {item.item_id for item in items}
    kept = [r for r in kept if r.get("item_id") in wanted]
    have: dict[str, int] = {}
    for row in kept:
        have[row["item_id"]] = have.get(row["item_id"], 0) + 1
    pending = [item for item in items if have.get(item.item_id, 0) < config.samples]
    partial = [item.item_id for item in pending if have.get(item.item_id)]
    if partial:  # an item with some but not all samples: redo it whole (a chunk is written at once)
        kept = [r for r in kept if r["item_id"] not in set(partial)]
        _write_rows(responses_path, kept)

    started = time.time()
    rows = list(kept)
    if pending:
        backend = backend or build_backend(config)
        sampling = SamplingConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                  top_p=config.top_p, seed=config.seed, batch_size=config.batch_size)
        rows += evaluate(pending, backend, judge, sampling, samples=config.samples,
                         on_rows=lambda chunk: _append(responses_path, chunk))
    order = {item.item_id: i for i, item in enumerate(items)}
    rows.sort(key=lambda r: (order.get(r["item_id"], len(order)), r.get("sample", 0)))
    metrics = compute_metrics(rows, judging)
    metrics.update({"set": set_name(config.eval_set), "recipe": config.recipe, "policy": policy, "judge": judge_desc,
                    "n_items": len(items), "samples_per_item": config.samples,
                    "n_resumed": len(kept), "seconds": round(time.time() - started, 1),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2))
    headline = {label: entry["rate"] for label, entry in metrics["headline"].items()}
    write_manifest(folder, "eval", stage, config, outputs=["responses.jsonl", "metrics.json", "config.json"],
                   summary={"set": metrics["set"], "n": metrics["n"], **headline}, seconds=metrics["seconds"])
    return folder
