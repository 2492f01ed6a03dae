"""Adapters that let RL frameworks use a running `latentrm serve` as their reward.

- `latentrm.integrations.verl`: `compute_score(data_source, solution_str, ground_truth, extra_info)` for verl's
  `custom_reward_function`, and `compute_score_batch(...)` for verl's batch reward manager.
- `latentrm.integrations.openrlhf`: `reward_func(queries, prompts, labels)`, OpenRLHF's reward-function file form.

Both read the server address from `LATENTRM_URL` (default `http://127.0.0.1:8000`) and an optional bearer
token from `LATENTRM_TOKEN` (or the file named by `LATENTRM_TOKEN_FILE`). See docs/serving.md.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from latentrm.errors import LatentrmError

DEFAULT_URL = "http://127.0.0.1:8000"
_local = threading.local()


def server_url(override: str | None = None) -> str:
    return (override or os.environ.get("LATENTRM_URL") or DEFAULT_URL).rstrip("/")


def _token() -> str | None:
    token = os.environ.get("LATENTRM_TOKEN")
    path = os.environ.get("LATENTRM_TOKEN_FILE")
    if not token and path:
        token = Path(path).read_text()
    return token.strip() if token and token.strip() else None


def _client() -> Any:
    """One keep-alive HTTP client per thread (frameworks call reward functions from worker threads)."""
    import httpx

    client = getattr(_local, "client", None)
    if client is None:
        timeout = float(os.environ.get("LATENTRM_TIMEOUT", "300"))
        client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        _local.client = client
    return client


def post_json(path: str, payload: dict[str, Any], *, url: str | None = None, retries: int | None = None) -> Any:
    """POST to the reward server; retries 503 (queue full / loading) per Retry-After and connection errors."""
    import httpx

    attempts = retries if retries is not None else int(os.environ.get("LATENTRM_RETRIES", "8"))
    headers = {}
    token = _token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    target = server_url(url) + path
    delay = 0.5
    for attempt in range(attempts + 1):
        try:
            response = _client().post(target, json=payload, headers=headers)
        except httpx.TransportError as exc:
            if attempt == attempts:
                raise LatentrmError(f"cannot reach the reward server at {target}: {exc}; is `latentrm serve` "
                                    "running and LATENTRM_URL right?") from None
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        if response.status_code == 503 and attempt < attempts:
            retry_after = response.headers.get("Retry-After", "")
            time.sleep(float(retry_after) if retry_after.isdigit() else delay)
            delay = min(delay * 2, 10.0)
            continue
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise LatentrmError(f"reward server {target} answered {response.status_code}: {detail}")
        return response.json()
    raise LatentrmError(f"reward server {target} stayed busy after {attempts} retries")
