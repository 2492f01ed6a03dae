"""OpenRLHF reward-function file backed by `latentrm serve`.

Two ways to use the server from OpenRLHF:

1. HTTP (no file): point OpenRLHF straight at the server,
   `--remote_rm_url http://HOST:8000/get_reward` (OpenRLHF <= 0.10.1; from 0.10.2: `--reward.remote_url`).
   Give one URL: OpenRLHF >= 0.9.1 sends one query per request and splits it across comma-separated
   URLs, so extra URLs only get empty lists (a 422 here); put a load balancer in front instead.
2. This file (`reward_func(queries, prompts, labels)` form), e.g. to send a bearer token:
   `--remote_rm_url $(python -c "import latentrm.integrations.openrlhf as m; print(m.__file__)")`
   (from 0.10.2: `--reward.remote_url <same path>`). OpenRLHF loads any path ending in `.py` this way.
   Unlike OpenRLHF's own HTTP client, this one follows the server's Retry-After on 503.

Environment: `LATENTRM_URL` (default http://127.0.0.1:8000), `LATENTRM_TOKEN` / `LATENTRM_TOKEN_FILE`.
The server splits each query with the backbone's chat template, so train with `--apply_chat_template`
(from 0.10.2: `--data.apply_chat_template`). `rewards` is the server's default shaper, `scores` = sigmoid(raw).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from latentrm.integrations import post_json


def reward_func(queries: Sequence[str], prompts: Sequence[str] | None = None, labels: Sequence[Any] | None = None,
                **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF custom reward: `{"rewards": tensor, "scores": tensor, "extra_logs": {...}}` from /get_reward."""
    import torch

    payload: dict[str, Any] = {"query": [str(q) for q in queries]}
    if prompts is not None:
        payload["prompts"] = [str(p) for p in prompts]
    if labels is not None:
        payload["labels"] = [None if label is None else str(label) for label in labels]
    answer = post_json("/get_reward", payload)
    return {
        "rewards": torch.tensor(answer["rewards"], dtype=torch.float32),
        "scores": torch.tensor(answer["scores"], dtype=torch.float32),
        "extra_logs": {key: torch.tensor(value, dtype=torch.float32)
                       for key, value in (answer.get("extra_logs") or {}).items()},
    }
