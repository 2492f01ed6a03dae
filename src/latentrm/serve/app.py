"""The reward server: a saved latent reward model over HTTP, for RL frameworks on other machines.

Endpoints
- `POST /get_reward` (OpenRLHF remote RM protocol): `{"query": [str], "prompts"?: [str], "labels"?: [...]}`
  -> `{"rewards": [float], "scores": [float], "extra_logs": {"latentrm_raw": [float]}}`. Each query (decoded
  prompt + response with special tokens) is split back into turns with the backbone's chat template
  (`latentrm.serve.split`). `rewards` = the server's default shaper applied to the raw score; `scores`
  = sigmoid(raw score), in 0..1, for OpenRLHF's dynamic filtering.
- `POST /score` (native): `{"items": [{"prompt": str | messages, "completion": str | messages,
  "subset"?: str}], "shaper"?: str, "shaper_params"?: {name: number}}` -> `{"scores", "rewards", "shaper", "model"}`.
- `GET /health`: 200 once the model is loaded, else 503 (`loading` or `error`).
- `GET /metrics`: Prometheus text.

Under load: items go through `MicroBatcher` (one forward per micro-batch, token budget, bounded
queue -> 503 + Retry-After). Limits: requests handled at once (503 + Retry-After: bodies waiting to
be admitted hold memory too), body bytes (413), items per request (413), tokens per item (422). A
body that is not valid input gets a 4xx, never a 500; that includes text the backbone's chat template
or tokenizer refuses. Optional bearer token (constant-time compare; `/health` stays open). A client
that disconnects cancels only its own items. On shutdown, admitted requests are drained.

Build with `create_app(ServeConfig(rm_path=...))` (loads `LatentRewardModel` in the background) or
`create_app(config, scorer=obj)` with any object matching `Scorer`. Run: `latentrm serve --rm DIR`.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from latentrm.errors import LatentrmError
from latentrm.models import render_for_scoring
from latentrm.rm.metrics import sigmoid
from latentrm.rm.shaping import Shaper, get_shaper, shape_scores
from latentrm.serve.batcher import BatchPolicy, MicroBatcher, QueueFull
from latentrm.serve.bodies import GetRewardRequest, ScoreRequest, _plain
from latentrm.serve.metrics import ServeMetrics
from latentrm.serve.middleware import (
    AuthMiddleware,
    BodyLimitMiddleware,
    BodyReadMiddleware,
    ConcurrencyLimitMiddleware,
    MetricsMiddleware,
    error_response,
)
from latentrm.serve.split import ChatSplitter

log = logging.getLogger("latentrm.serve")


class Scorer(Protocol):
    """What the server needs from a reward model (`LatentRewardModel` satisfies it)."""

    backbone: Any  # `.tokenizer` renders and counts tokens
    meta: dict[str, Any]  # rm.json

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], *, batch_size: int | None = None
              ) -> list[float]: ...


def _is_ensemble(scorer: Any) -> bool:
    """Ensemble reward models also give the per-head std (`score_with_std`), for the `ensemble` shaper."""
    head = (getattr(scorer, "meta", None) or {}).get("head") or {}
    return head.get("type") == "ensemble" and callable(getattr(scorer, "score_with_std", None))


@dataclass(frozen=True)
class ServeConfig:
    rm_path: str | None = None
    device: str | None = None
    dtype: str = "auto"
    shaper: str = "raw"  # default for /get_reward and for /score without "shaper"
    shaper_params: Mapping[str, float] = field(default_factory=dict)
    batching: bool = True
    max_batch_tokens: int = 16384
    max_batch_items: int = 64
    max_wait_ms: float = 5.0
    max_queue_items: int = 4096
    max_items: int = 1024  # per request
    max_requests: int = 4096  # scoring requests handled at once (parsed, waiting or queued); then 503
    max_item_tokens: int | None = None  # None: rm.json max_length, else 4096
    max_body_bytes: int = 16 * 1024 * 1024
    body_timeout: float = 30.0  # seconds to receive a whole request body; then 408
    token: str | None = field(default=None, repr=False)
    subset_from_labels: bool = False  # /get_reward: use OpenRLHF labels as subsets (--data.label_key subset)
    drain_timeout: float = 60.0

    def __post_init__(self) -> None:
        positive = {"max_batch_tokens": self.max_batch_tokens, "max_batch_items": self.max_batch_items,
                    "max_queue_items": self.max_queue_items, "max_items": self.max_items,
                    "max_requests": self.max_requests, "max_body_bytes": self.max_body_bytes}
        for name, value in positive.items():
            if value < 1:
                raise LatentrmError(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
        if self.max_items > self.max_queue_items:
            raise LatentrmError(f"--max-items ({self.max_items}) must not exceed --max-queue-items "
                                f"({self.max_queue_items}), or a full-size request could never be admitted")
        if self.max_wait_ms < 0:
            raise LatentrmError(f"--max-wait-ms must be >= 0 (got {self.max_wait_ms})")
        if not (self.body_timeout > 0 and math.isfinite(self.body_timeout)):
            raise LatentrmError(f"--body-timeout must be a finite number of seconds > 0 (got {self.body_timeout})")
        if self.token is not None and not self.token.strip():
            raise LatentrmError("the bearer token is empty; put a non-empty token in the variable or file")


_error = error_response


class _Reject(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.response = _error(status, message, headers)


# --------------------------------------------------------------------------- server state


class _State:
    def __init__(self, config: ServeConfig, metrics: ServeMetrics) -> None:
        self.config, self.metrics = config, metrics
        self.scorer: Scorer | None = None
        self.batcher: MicroBatcher | None = None
        self.splitter: ChatSplitter | None = None
        self.splitter_error = ""
        self.tokenizer: Any = None  # a private copy: render + count, never shared with the scoring thread
        self.tokenizer_lock = threading.Lock()
        self.max_item_tokens = 0
        self.default_shaper: Shaper | None = None
        self.has_std = False
        self.error = ""
        self._shapers: dict[tuple, Shaper] = {}

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    def prepare(self, scorer: Scorer) -> None:
        """Runs in a thread after loading: everything that can fail does so before we report ready."""
        config = self.config
        meta = dict(getattr(scorer, "meta", None) or {})
        self.tokenizer = copy.deepcopy(scorer.backbone.tokenizer)
        try:
            self.splitter = ChatSplitter.from_tokenizer(self.tokenizer)
        except LatentrmError as exc:
            self.splitter_error = str(exc)
        self.max_item_tokens = int(config.max_item_tokens or meta.get("max_length") or 4096)
        if self.max_item_tokens > config.max_batch_tokens:
            raise LatentrmError(f"the per-item token limit ({self.max_item_tokens}) exceeds --max-batch-tokens "
                                f"({config.max_batch_tokens}); raise --max-batch-tokens or lower --max-item-tokens")
        self.default_shaper = get_shaper(config.shaper, meta, **dict(config.shaper_params))
        self.has_std = _is_ensemble(scorer)
        if self.default_shaper.needs_std and not self.has_std:
            raise LatentrmError(f"--shaper {config.shaper} needs an ensemble reward model (`latentrm rm train "
                                "--ensemble K`); this one has a single head")
        self.scorer = scorer

    def shaper(self, name: str | None, params: Mapping[str, float] | None) -> Shaper:
        if name is None and not params:
            assert self.default_shaper is not None
            return self.default_shaper
        key = (name or self.config.shaper, tuple(sorted((params or {}).items())))
        if key not in self._shapers:
            if len(self._shapers) >= 64:  # parameters come from clients: keep the cache bounded
                self._shapers.clear()
            self._shapers[key] = get_shaper(key[0], self.scorer.meta if self.scorer else {}, **dict(key[1]))
        return self._shapers[key]

    def model_info(self) -> dict[str, Any]:
        meta = getattr(self.scorer, "meta", None) or {}
        backbone = meta.get("backbone") or {}
        head = meta.get("head") or {}
        info = {"backbone": backbone.get("spec"), "revision": backbone.get("revision"), "layer": meta.get("layer"),
                "pooling": meta.get("pooling"), "head": head.get("type")}
        if not self.config.token:  # /health is open; with auth on, do not show where files live
            info["rm_path"] = self.config.rm_path
        return info

    def split_queries(self, queries: list[str], prompts: list[str] | None = None) -> list[Any]:
        """Each query as (prompt messages, response). A chat-rendered query is parsed by the template; a plain
        one (a policy without a chat template: OpenRLHF then sends the raw prompt + response) is split at the
        end of its entry in `prompts`, the prompt becoming one user turn."""
        from latentrm.serve.split import SplitQuery

        assert self.splitter is not None
        parts = []
        with self.tokenizer_lock:
            for index, query in enumerate(queries):
                prompt = prompts[index] if prompts is not None else None
                if prompt and query.startswith(prompt) and not self.splitter.looks_chat(query):
                    parts.append(SplitQuery([{"role": "user", "content": prompt}], query[len(prompt):].strip(),
                                            roundtrip_ok=False))
                    continue
                with _client_input(f"query {index}"):
                    parts.append(self.splitter.split(query, where=f"query {index}"))
        return parts

    def count_tokens(self, prompts: list[Any], completions: list[Any], what: str = "item") -> list[int]:
        """Tokens of each rendered scoring text; input the template or tokenizer refuses -> LatentrmError."""
        with self.tokenizer_lock:
            texts = []
            for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
                with _client_input(f"{what} {index}"):
                    texts.append(render_for_scoring(self.tokenizer, prompt, completion).text)
            try:
                encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            except Exception:  # noqa: BLE001 - find the item at fault, one at a time
                encoded = []
                for index, text in enumerate(texts):
                    with _client_input(f"{what} {index}"):
                        encoded.append(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return [len(ids) for ids in encoded]


@contextmanager
def _client_input(where: str) -> Iterator[None]:
    """Rendering or tokenizing client text: templates raise (e.g. Gemma on a system turn, Llama on roles
    that do not alternate) and tokenizers refuse lone surrogates. Those are bad input (422), not a 500."""
    try:
        yield
    except LatentrmError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here is caused by the request's text
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise LatentrmError(f"{where}: the backbone's chat template or tokenizer refuses it ({reason}); "
                            "check the roles and the text (e.g. unpaired surrogates)") from None


def _score_batch(scorer: Scorer, max_tokens: int) -> Callable[[list[Any]], list[tuple[float, float | None]]]:
    """One reward-model call = one padded forward over the micro-batch; results are (score, std or None)."""
    ensemble = _is_ensemble(scorer)
    # (mean, std) arrays for an ensemble, else a list of scores.
    method: Callable[..., Any] = scorer.score_with_std if ensemble else scorer.score  # type: ignore[attr-defined]
    # Pass the token budget on where the scorer takes one, so it does not re-split the micro-batch.
    extra = {"max_tokens": max_tokens} if "max_tokens" in inspect.signature(method).parameters else {}

    def run(payloads: list[Any]) -> list[tuple[float, float | None]]:
        prompts, completions = [p for p, _ in payloads], [c for _, c in payloads]
        if ensemble:
            mean, std = method(prompts, completions, batch_size=len(payloads), **extra)
            return [(float(m), float(s)) for m, s in zip(mean, std, strict=True)]
        return [(float(s), None) for s in method(prompts, completions, batch_size=len(payloads), **extra)]

    return run


async def _wait_disconnect(request: Request) -> None:
    """Returns when the client goes away. The body is already read, so `receive` only reports that."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# --------------------------------------------------------------------------- the app


def create_app(config: ServeConfig, scorer: Scorer | None = None, *, loader: Callable[[], Scorer] | None = None,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The FastAPI app. Give `scorer` (ready at once), `loader`, or `config.rm_path` (LatentRewardModel.load)."""
    metrics = ServeMetrics()
    state = _State(config, metrics)

    def default_loader() -> Scorer:
        if not config.rm_path:
            raise LatentrmError("no reward model given; pass --rm DIR")
        from latentrm.rm.model import LatentRewardModel

        return LatentRewardModel.load(config.rm_path, device=config.device, dtype=config.dtype)

    async def load() -> None:
        try:
            model = scorer if scorer is not None else await asyncio.to_thread(loader or default_loader)
            await asyncio.to_thread(state.prepare, model)
            policy = (BatchPolicy(config.max_batch_tokens, config.max_batch_items, config.max_wait_ms,
                                  config.max_queue_items) if config.batching
                      else BatchPolicy.unbatched(config.max_queue_items))
            batcher = MicroBatcher(_score_batch(model, config.max_batch_tokens), policy, metrics)
            batcher.start()
            state.batcher = batcher
            metrics.ready.set(1)
            log.info("reward model ready: %s", json.dumps(state.model_info()))
        except Exception as exc:  # reported on /health and to the caller's hook
            state.error = " ".join(str(exc).split()) or type(exc).__name__
            log.error("loading the reward model failed: %s", state.error)
            if on_load_error is not None:
                on_load_error(exc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        loading = asyncio.create_task(load())
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            if state.batcher is not None:
                await state.batcher.close(timeout=config.drain_timeout)

    app = FastAPI(title="latentrm reward server", lifespan=lifespan)
    app.state.latentrm = state

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc/msg/type only: echoing "input" back could return megabytes of the request body
        errors = jsonable_encoder([{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()])
        kind = _request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json" and any(e.get("loc") in (["body"], ("body",)) for e in errors):
            metrics.rejected.labels("invalid").inc()
            shown = f"Content-Type {kind!r}" if kind else "no Content-Type"
            return JSONResponse({"detail": f"expected a JSON body (Content-Type: application/json), got {shown}",
                                 "errors": errors}, status_code=422)
        # a union (a string or a list of messages) reports each branch; our own checks say the most
        first = next((e for e in errors if e.get("type") == "value_error"), errors[0] if errors else {})
        where = ".".join(str(p) for p in first.get("loc", []))
        message = f"invalid request body at {where}: {first.get('msg', 'malformed')}" if first else "invalid body"
        metrics.rejected.labels("invalid").inc()
        return JSONResponse({"detail": message, "errors": errors}, status_code=422)

    def not_ready() -> JSONResponse:
        if state.error:
            return _error(503, f"the reward model failed to load: {state.error}")
        return _error(503, "the reward model is still loading", {"Retry-After": "5"})

    async def score_pairs(request: Request, prompts: list[Any], completions: list[Any], what: str = "item"
                          ) -> tuple[list[float], np.ndarray | None]:
        """Raw scores `[n]` and, for ensemble models, the per-head std `[n]`."""
        assert state.batcher is not None
        if len(prompts) > config.max_items:
            metrics.rejected.labels("too_many_items").inc()
            raise _Reject(413, f"{len(prompts)} items in one request, over the limit of {config.max_items} "
                               "(--max-items); split the request")
        try:
            tokens = await asyncio.to_thread(state.count_tokens, prompts, completions, what)
        except LatentrmError as exc:
            raise _Reject(422, str(exc)) from None
        for index, count in enumerate(tokens):
            if count > state.max_item_tokens:
                metrics.rejected.labels("too_long").inc()
                raise _Reject(422, f"{what} {index} is {count} tokens, over the limit of {state.max_item_tokens} "
                                   "(--max-item-tokens); shorten the prompt or completion")
        job = asyncio.ensure_future(state.batcher.submit(list(zip(prompts, completions, strict=True)), tokens))
        gone = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not job.done():  # the client went away (or this handler was cancelled): drop its items
                job.cancel()
        if job.cancelled() or not job.done():
            raise _Reject(499, "client closed the request")
        try:
            results = job.result()
        except QueueFull as exc:
            raise _Reject(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except LatentrmError as exc:
            raise _Reject(422, str(exc)) from None
        raw = [score for score, _ in results]
        std = np.array([spread for _, spread in results], dtype=np.float64) if state.has_std else None
        return raw, std

    def example_std(n: int) -> np.ndarray | None:
        return np.zeros(n) if state.has_std else None

    @app.post("/score")
    async def score(request: Request, body: ScoreRequest) -> Response:
        if not state.ready:
            return not_ready()
        try:
            shaper = state.shaper(body.shaper, body.shaper_params)
            subsets = [item.subset for item in body.items]
            shaper(np.zeros(len(subsets)), subsets, example_std(len(subsets)))  # bad subset / no std: fail early
            prompts = [_plain(i.prompt) for i in body.items]
            raw, std = await score_pairs(request, prompts, [_plain(i.completion) for i in body.items])
            rewards = shape_scores(shaper, np.asarray(raw), subsets, std, prompts)  # the rl.reward composition
        except LatentrmError as exc:
            return _error(422, str(exc))
        except _Reject as reject:
            return reject.response
        answer = {"scores": raw, "rewards": rewards.tolist(), "shaper": shaper.describe(), "model": state.model_info()}
        if std is not None:
            answer["std"] = std.tolist()
        return JSONResponse(answer)

    @app.post("/get_reward")
    async def get_reward(request: Request, body: GetRewardRequest) -> Response:
        if not state.ready:
            return not_ready()
        n = len(body.query)
        for name, values in (("prompts", body.prompts), ("labels", body.labels)):
            if values is not None and len(values) != n:
                return _error(422, f"'{name}' has {len(values)} entries but 'query' has {n}; they must pair up")
        if state.splitter is None:
            return _error(422, state.splitter_error)
        subsets: list[str | None] = [None] * n
        if config.subset_from_labels and body.labels is not None:
            if not all(label is None or isinstance(label, str) for label in body.labels):
                return _error(422, "with --subset-from-labels, 'labels' must be strings (subset names) or null")
            subsets = list(body.labels)
        try:
            if n > config.max_items:
                metrics.rejected.labels("too_many_items").inc()
                raise _Reject(413, f"{n} queries in one request, over the limit of {config.max_items} "
                                   "(--max-items); split the request")
            parts = await asyncio.to_thread(state.split_queries, body.query, body.prompts)
            mismatched = sum(not p.roundtrip_ok for p in parts)
            if mismatched:
                metrics.split_mismatch.inc(mismatched)
            shaper = state.shaper(None, None)
            shaper(np.zeros(n), subsets, example_std(n))
            raw, std = await score_pairs(request, [p.prompt for p in parts], [p.response for p in parts], "query")
            rewards = shape_scores(shaper, np.asarray(raw), subsets, std, [p.prompt for p in parts])
        except LatentrmError as exc:
            return _error(422, str(exc))
        except _Reject as reject:
            return reject.response
        return JSONResponse({"rewards": rewards.tolist(), "scores": sigmoid(np.asarray(raw)).tolist(),
                             "extra_logs": {"latentrm_raw": raw}})

    @app.get("/health")
    async def health() -> Response:
        if not state.ready:
            body = {"status": "error" if state.error else "loading", "error": state.error or None}
            return JSONResponse(body, status_code=503, headers=None if state.error else {"Retry-After": "5"})
        assert state.batcher is not None
        return JSONResponse({"status": "ready", "model": state.model_info(),
                             "queue_items": state.batcher.queued_items, "batching": config.batching,
                             "pid": os.getpid()})  # which worker answered, under `serve --workers N`

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    app.add_middleware(BodyReadMiddleware, timeout=config.body_timeout)  # inside the size limit
    app.add_middleware(BodyLimitMiddleware, limit=config.max_body_bytes)
    app.add_middleware(ConcurrencyLimitMiddleware, limit=config.max_requests, metrics=metrics)  # inside auth
    if config.token:
        app.add_middleware(AuthMiddleware, token=config.token)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
