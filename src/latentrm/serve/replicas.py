"""`latentrm serve --workers N`: N server processes behind one address, each loading the reward model once.

uvicorn's own multiprocess supervisor starts the workers (`uvicorn.run(..., workers=N, factory=True)`); the
kernel spreads connections over them (one listening socket, shared). Each worker is a whole server: its
own model copy, micro-batcher, queue limits and /metrics (Prometheus scrapes one worker per request; sum
them by `instance` or scrape each port behind a load balancer instead). A worker imports this module and
builds its app from the environment, because uvicorn hands a worker only an import string:

- `LATENTRM_SERVE_CONFIG`: the `ServeConfig` as JSON, written by the parent (`environment(config)`);
- `LATENTRM_SERVE_TOKEN`: the bearer token, kept out of the JSON and of every command line;
- `LATENTRM_SERVE_THREADS`: torch threads per worker.

On one GPU, N workers mean N model copies in its memory; on CPU they share the cores (set --threads to
cores / N). A worker whose model fails to load reports it on its /health (503, "error").
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

CONFIG_ENV, TOKEN_ENV, THREADS_ENV = "LATENTRM_SERVE_CONFIG", "LATENTRM_SERVE_TOKEN", "LATENTRM_SERVE_THREADS"


def environment(config: Any, threads: int | None) -> dict[str, str]:
    """The variables a worker reads: the config without its token, the token apart."""
    values = asdict(config)
    token = values.pop("token", None)
    values["shaper_params"] = dict(values.get("shaper_params") or {})
    env = {CONFIG_ENV: json.dumps(values)}
    if token:
        env[TOKEN_ENV] = token
    if threads:
        env[THREADS_ENV] = str(threads)
    return env


def app_from_env() -> Any:
    """uvicorn's app factory in each worker process."""
    import logging

    from latentrm.serve.app import ServeConfig, create_app

    if os.environ.get(THREADS_ENV):
        import torch

        torch.set_num_threads(int(os.environ[THREADS_ENV]))
    values = json.loads(os.environ[CONFIG_ENV])
    config = ServeConfig(**values, token=os.environ.get(TOKEN_ENV) or None)
    logger = logging.getLogger("latentrm.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"%(levelname)s:     [worker {os.getpid()}] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return create_app(config)
