"""`latentrm serve`: run the reward server (see `latentrm.serve.app` and docs/serving.md).

Heavy imports (torch, fastapi, uvicorn) happen inside `serve`, so `latentrm --help` stays fast.
Also runnable as `python -m latentrm.serve --rm DIR`.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import typer

from latentrm import validate
from latentrm.errors import LatentrmError


def _shaper_names() -> list[str]:
    from latentrm.rl.cli import shaper_names

    return shaper_names()

def read_token(token_env: str | None, token_file: Path | None) -> str | None:
    """The bearer token from an environment variable or a file (stripped); None when neither is given."""
    if token_env and token_file:
        raise LatentrmError("give either --token-env or --token-file, not both")
    if token_env:
        value = os.environ.get(token_env)
        if not value or not value.strip():
            raise LatentrmError(f"--token-env {token_env}: that environment variable is unset or empty")
        return value.strip()
    if token_file:
        try:
            value = Path(token_file).read_text()
        except OSError as exc:
            raise LatentrmError(f"--token-file {token_file}: cannot read it ({exc.strerror})") from None
        if not value.strip():
            raise LatentrmError(f"--token-file {token_file} is empty; write the token into it")
        return value.strip()
    return None


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def check_serve_options(log_level: str, max_body_mb: float, device: str | None, host: str, port: int) -> None:
    """Options uvicorn or torch would reject with a traceback, or late: one line each, before the model loads."""
    import math
    import re
    import socket

    if log_level.lower() not in LOG_LEVELS:
        raise LatentrmError(f"--log-level {log_level!r}: use one of {', '.join(LOG_LEVELS)}")
    if not (math.isfinite(max_body_mb) and max_body_mb > 0):
        raise LatentrmError(f"--max-body-mb {max_body_mb}: give a size in MiB > 0, e.g. 16")
    if device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise LatentrmError(f"--device {device!r}: use cpu, cuda, cuda:N or mps")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == 98 else f"cannot be bound ({exc.strerror})"
            raise LatentrmError(f"--port {port}: {host}:{port} {reason}; stop what holds it or pick another --port")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    rm: Path = typer.Option(..., "--rm", help="Reward model folder (rm.json + head), from `latentrm rm train`."),
    host: str = typer.Option("127.0.0.1", help="Bind address. Use 0.0.0.0 only behind a firewall, with a token."),
    port: int = typer.Option(8000, help="TCP port (1-65535).", min=1, max=65535),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: cuda if available)."),
    dtype: str = typer.Option("auto", help="Backbone dtype: auto, float32, bfloat16, float16.",
                              callback=validate.choice_option(validate.dtypes)),
    shaper: str = typer.Option("raw", help="Default reward shaper (raw, calibrated, capped, quantile_match, density, ensemble); "
                               "/get_reward always uses it, /score unless the request names one.",
                               callback=validate.choice_option(_shaper_names)),
    shaper_param: list[str] | None = typer.Option(None, "--shaper-param", help="name=number, repeatable "
                                                  "(e.g. tau=0.5 for calibrated, quantile=0.9 for capped)."),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="Dynamic micro-batching (off: one "
                                  "forward per item, for comparison)."),
    max_batch_tokens: int = typer.Option(16384, help="Token budget of one forward (items x longest item)."),
    max_batch_items: int = typer.Option(64, help="Most items in one forward."),
    max_wait_ms: float = typer.Option(5.0, help="How long the first queued item waits for company."),
    max_queue_items: int = typer.Option(4096, help="Items allowed to wait; beyond it: 503 + Retry-After."),
    max_items: int = typer.Option(1024, help="Most items (queries) in one request; beyond it: 413."),
    max_requests: int = typer.Option(4096, help="Scoring requests handled at once (received, waiting to be "
                                     "queued, or queued); beyond it: 503 + Retry-After."),
    max_item_tokens: int | None = typer.Option(None, help="Most tokens in one rendered item; beyond it: 422 "
                                               "(default: the reward model's max_length)."),
    max_body_mb: float = typer.Option(16.0, help="Largest request body in MiB; beyond it: 413."),
    body_timeout: float = typer.Option(30.0, help="Seconds to receive a whole request body; beyond it: 408."),
    token_env: str | None = typer.Option(None, help="Require 'Authorization: Bearer <token>', token read "
                                         "from this environment variable."),
    token_file: Path | None = typer.Option(None, help="Same, token read from this file."),
    subset_from_labels: bool = typer.Option(False, help="/get_reward: treat OpenRLHF labels as subset names "
                                            "for the shaper (train with --data.label_key subset)."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    graceful_timeout: float = typer.Option(60.0, help="Seconds to drain in-flight requests on shutdown."),
    workers: int = typer.Option(1, help="Server processes behind this address, each loading the reward model "
                                "once (uvicorn workers; on CPU give each --threads cores / N).", min=1),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log", help="Log every request line."),
) -> None:
    """Serve a latent reward model over HTTP (OpenRLHF /get_reward, native /score, /health, /metrics)."""
    import logging

    import uvicorn

    from latentrm.serve.app import ServeConfig, create_app

    rm = Path(rm)
    if not (rm / "rm.json").exists():
        raise LatentrmError(f"{rm} holds no rm.json; pass a folder written by `latentrm rm train`")
    check_serve_options(log_level, max_body_mb, device, host, port)
    token = read_token(token_env, token_file)
    if not _is_loopback(host) and token is None:
        typer.echo(f"warning: binding {host} without --token-env/--token-file: anyone who can reach this port "
                   "can query the reward model", err=True)
    if threads:
        import torch

        torch.set_num_threads(threads)
    config = ServeConfig(
        rm_path=str(rm), device=device, dtype=dtype, shaper=shaper, shaper_params=validate.parse_shaper_params(shaper_param),
        batching=batching, max_batch_tokens=max_batch_tokens, max_batch_items=max_batch_items,
        max_wait_ms=max_wait_ms, max_queue_items=max_queue_items, max_items=max_items, max_requests=max_requests,
        max_item_tokens=max_item_tokens, max_body_bytes=int(max_body_mb * 1024 * 1024), body_timeout=body_timeout, token=token,
        subset_from_labels=subset_from_labels, drain_timeout=graceful_timeout,
    )
    if workers > 1:  # uvicorn's supervisor; each worker builds its app from the environment (serve/replicas.py)
        from latentrm.serve.replicas import environment

        os.environ.update(environment(config, threads))
        uvicorn.run("latentrm.serve.replicas:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level.lower(), access_log=access_log,
                    timeout_graceful_shutdown=int(graceful_timeout))
        return
    failure: dict[str, BaseException] = {}
    server: Any = None

    def on_load_error(exc: BaseException) -> None:
        failure["error"] = exc
        if server is not None:
            server.should_exit = True

    logging.getLogger("latentrm.serve").setLevel("DEBUG" if log_level.lower() == "trace" else log_level.upper())
    if not logging.getLogger("latentrm.serve").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logging.getLogger("latentrm.serve").addHandler(handler)
    app = create_app(config, on_load_error=on_load_error)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(), access_log=access_log,
                                           timeout_graceful_shutdown=int(graceful_timeout)))
    server.run()
    if failure:
        error = failure["error"]
        raise LatentrmError(f"the reward model failed to load: {error}")


def main() -> None:
    """`python -m latentrm.serve`: the same command without the rest of the CLI."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve)
    try:
        app()
    except LatentrmError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
