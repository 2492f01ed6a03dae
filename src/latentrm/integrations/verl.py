"""verl custom reward function backed by `latentrm serve`.

verl passes only the decoded response (`solution_str`), so the prompt must travel in the dataset's
`extra_info` column: `extra_info={"prompt": <str or list of {role, content}>, "subset": "fake"}` (subset
optional). When preparing the verl parquet, copy the prompt messages into `extra_info["prompt"]`.

verl config (Hydra overrides; verl >= 0.7.1 nests the same keys under `reward.`):

    custom_reward_function.path=$(python -c "import latentrm.integrations.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score

or, on verl <= 0.7.0 with `reward_model.reward_manager=batch`, `custom_reward_function.name=compute_score_batch`.
Environment: `LATENTRM_URL` (default http://127.0.0.1:8000), `LATENTRM_TOKEN` / `LATENTRM_TOKEN_FILE`,
`LATENTRM_SHAPER` (default: the server's default shaper).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.integrations import post_json


def _prompt_of(extra_info: Any, where: str) -> str | list[dict[str, str]]:
    if not isinstance(extra_info, Mapping) or extra_info.get("prompt") is None:
        raise LatentrmError(
            f"{where}: extra_info has no 'prompt'; verl passes only the response, so put the prompt "
            "(a string or a list of {role, content}) into the dataset's extra_info column"
        )
    prompt = extra_info["prompt"]
    if isinstance(prompt, str):
        return prompt
    if hasattr(prompt, "tolist"):  # parquet lists arrive as numpy arrays
        prompt = prompt.tolist()
    if isinstance(prompt, Sequence) and all(isinstance(m, Mapping) for m in prompt):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    raise LatentrmError(f"{where}: extra_info['prompt'] must be a string or a list of {{role, content}}")


def _item(solution_str: str, extra_info: Any, where: str) -> dict[str, Any]:
    item: dict[str, Any] = {"prompt": _prompt_of(extra_info, where), "completion": str(solution_str)}
    subset = extra_info.get("subset") if isinstance(extra_info, Mapping) else None
    if subset is not None:
        item["subset"] = str(subset)
    return item


def _request(items: list[dict[str, Any]]) -> list[float]:
    payload: dict[str, Any] = {"items": items}
    shaper = os.environ.get("LATENTRM_SHAPER")
    if shaper:
        payload["shaper"] = shaper
    return [float(r) for r in post_json("/score", payload)["rewards"]]


def compute_score(data_source: Any, solution_str: str, ground_truth: Any = None, extra_info: Any = None,
                  **kwargs: Any) -> float:
    """verl reward: the shaped latent reward of `solution_str` for `extra_info['prompt']`."""
    return _request([_item(solution_str, extra_info, "compute_score")])[0]


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str],
                        ground_truths: Sequence[Any] | None = None, extra_infos: Sequence[Any] | None = None,
                        **kwargs: Any) -> list[float]:
    """verl batch reward manager form: one HTTP request for the whole batch."""
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    if len(infos) != len(solution_strs):
        raise LatentrmError(f"compute_score_batch: {len(solution_strs)} responses but {len(infos)} extra_infos")
    items = [_item(s, info, f"compute_score_batch item {i}") for i, (s, info) in enumerate(zip(solution_strs, infos, strict=True))]
    return _request(items) if items else []
