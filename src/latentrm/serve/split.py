"""Split an OpenRLHF `query` (decoded prompt + response, special tokens kept) back into messages.

OpenRLHF sends the reward server the full decoded sequence, e.g. for SmolLM2
`<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nWho is X?<|im_end|>\\n<|im_start|>assistant\\nI ...<|im_end|>`.
The reward model scores `chat_template(prompt + [assistant: completion])`, so the
server needs the prompt messages and the response text back.

No marker string is hard-coded. `ChatSplitter.from_tokenizer` renders sentinel
conversations through the backbone's own chat template and reads off, per role,
the text that opens and closes a turn (`<|im_start|>user\\n` ... `<|im_end|>\\n` for
ChatML templates; `<|start_header_id|>user<|end_header_id|>\\n\\n` ... `<|eot_id|>`
for Llama 3). `split(query)` then walks the query turn by turn. The last turn must
be the assistant's: it is the response (an unterminated one is a truncated
generation and is kept as is). Left/right padding and repeated EOS tokens are
stripped. `roundtrip_ok` tells whether re-rendering the parsed turns reproduces the
query exactly; templates that inject changing text (dates) may not, and the server
counts those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from latentrm.errors import LatentrmError
from latentrm.models import render_for_scoring

_SENT = {
    "system": "latentrmSentinelSystemQ7",
    "user": "latentrmSentinelUserK3",
    "user2": "latentrmSentinelUserZ9",
    "assistant": "latentrmSentinelAssistantW5",
}


@dataclass(frozen=True)
class Turn:
    """How the template wraps one role's content: `open + content + close_core + close_tail`."""

    role: str
    open: str
    close_core: str  # the end-of-turn marker itself, e.g. `<|im_end|>`
    close_tail: str  # what follows it inside the template, e.g. a newline; optional in queries


@dataclass(frozen=True)
class SplitQuery:
    prompt: list[dict[str, str]]  # the conversation before the response
    response: str
    roundtrip_ok: bool  # render_for_scoring(prompt, response) == the (normalised) query


def _render(tokenizer: Any, messages: list[dict[str, str]], generation: bool = False) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation))


def _after(text: str, needle: str) -> int:
    index = text.find(needle)
    if index < 0:
        raise LatentrmError("the chat template drops message content; /get_reward cannot split queries for it")
    return index + len(needle)


def _close(text: str) -> tuple[str, str]:
    core = text.rstrip()
    return core, text[len(core):]


class ChatSplitter:
    """Template-derived parser for prompt + response texts; see the module docstring."""

    def __init__(self, turns: Sequence[Turn], preamble: str, strip_tokens: Sequence[str], tokenizer: Any) -> None:
        # Longest opener first, so a role whose opener extends another's wins.
        self.turns = sorted(turns, key=lambda t: len(t.open), reverse=True)
        self.preamble = preamble
        self.strip_tokens = [t for t in dict.fromkeys(strip_tokens) if t]
        self.tokenizer = tokenizer

    @property
    def assistant(self) -> Turn:
        return next(t for t in self.turns if t.role == "assistant")

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> ChatSplitter:
        if not getattr(tokenizer, "chat_template", None):
            raise LatentrmError("the backbone's tokenizer has no chat template; /get_reward needs one to split "
                                "queries (use /score, which takes prompt and completion separately)")
        user, user2, assistant, system = _SENT["user"], _SENT["user2"], _SENT["assistant"], _SENT["system"]
        one = [{"role": "user", "content": user}]
        plain, generation = _render(tokenizer, one), _render(tokenizer, one, generation=True)
        if not generation.startswith(plain) or generation == plain:
            raise LatentrmError("the chat template has no generation prompt (assistant header); /get_reward "
                                "cannot find where the response starts")
        assistant_open = generation[len(plain):]
        two = one + [{"role": "assistant", "content": assistant}]
        rendered_two = _render(tokenizer, two)
        assistant_close = rendered_two[_after(rendered_two, assistant):]
        three = two + [{"role": "user", "content": user2}]
        rendered_three = _render(tokenizer, three)
        start_user2 = rendered_three.find(user2)
        between = rendered_three[_after(rendered_three, assistant):start_user2]
        if not between.startswith(assistant_close):
            raise LatentrmError("the chat template closes assistant turns differently in history and at the end; "
                                "/get_reward cannot split queries for it")
        user_open = between[len(assistant_close):]
        user_close = rendered_three[start_user2 + len(user2):]
        # The text before the first user turn: a preamble (BOS) and maybe a default system turn.
        head = plain[: plain.find(user)]
        if not head.endswith(user_open):
            raise LatentrmError("the chat template opens the first user turn differently from later ones; "
                                "/get_reward cannot split queries for it")
        turns = [Turn("user", user_open, *_close(user_close)), Turn("assistant", assistant_open, *_close(assistant_close))]
        bos = getattr(tokenizer, "bos_token", None) or ""
        # A preamble (BOS) is text before the first turn that is not part of any turn.
        preamble = bos if bos and head.startswith(bos) and not head.startswith(user_open) else ""
        try:
            rendered_sys = _render(tokenizer, [{"role": "system", "content": system}] + one)
        except Exception:  # templates without a system role raise; then system turns cannot occur
            rendered_sys = ""
        if system in rendered_sys:
            sys_head = rendered_sys[: rendered_sys.find(system)]
            sys_between = rendered_sys[_after(rendered_sys, system): rendered_sys.find(user)]
            if sys_between.endswith(user_open):
                # The system opener is the user opener with the role name swapped when the template
                # is that regular (ChatML, Llama 3 headers); otherwise everything after the preamble.
                regular = user_open.replace("user", "system", 1)
                if "user" in user_open and sys_head.endswith(regular):
                    sys_open = regular
                    preamble = sys_head[: -len(regular)]
                else:
                    sys_open = sys_head[len(preamble):] if sys_head.startswith(preamble) else sys_head
                sys_close = sys_between[: len(sys_between) - len(user_open)] if user_open else sys_between
                turns.append(Turn("system", sys_open, *_close(sys_close)))
        strip = [getattr(tokenizer, "pad_token", None), getattr(tokenizer, "eos_token", None)]
        return cls(turns, preamble, [t for t in strip if isinstance(t, str)], tokenizer)

    # ------------------------------------------------------------------ parsing

    def _strip_padding(self, text: str) -> str:
        changed = True
        while changed:
            changed = False
            for token in self.strip_tokens:
                if text.startswith(token) and not any(text.startswith(t.open) for t in self.turns) and not (
                    self.preamble and text.startswith(self.preamble)
                ):
                    text, changed = text[len(token):], True
        return text

    def _strip_trailing(self, text: str) -> str:
        changed = True
        while changed:
            changed = False
            stripped = text.rstrip()
            if stripped != text:
                text, changed = stripped, True
            for token in self.strip_tokens:
                if text.endswith(token):
                    text, changed = text[: -len(token)], True
        return text

    def looks_chat(self, query: str) -> bool:
        """Does the query open with one of the template's turn markers (after padding and any preamble)?"""
        text = self._strip_padding(query)
        if self.preamble and text.startswith(self.preamble):
            text = text[len(self.preamble):]
        return any(t.open and text.startswith(t.open) for t in self.turns)

    def split(self, query: str, where: str = "query") -> SplitQuery:
        """Parse one query into (prompt messages, response); `where` names it in errors."""
        text = self._strip_padding(query)
        if self.preamble and text.startswith(self.preamble) and not any(text.startswith(t.open) for t in self.turns):
            text = text[len(self.preamble):]
        messages: list[dict[str, str]] = []
        position = 0
        open_response = False
        while position < len(text):
            turn = next((t for t in self.turns if t.open and text.startswith(t.open, position)), None)
            if turn is None:
                rest = self._strip_trailing(text[position:])
                if rest == "":
                    break
                raise LatentrmError(
                    f"{where}: cannot parse the text at character {position} ({text[position:position + 40]!r}) as a "
                    f"chat turn of the backbone's template; send prompt + response rendered with that template "
                    f"(e.g. OpenRLHF --apply_chat_template), or use /score"
                )
            start = position + len(turn.open)
            end = text.find(turn.close_core, start) if turn.close_core else -1
            if end < 0:
                if turn.role != "assistant":
                    raise LatentrmError(f"{where}: the {turn.role} turn starting at character {position} never ends "
                                        f"({turn.close_core!r} missing); the query holds no response")
                messages.append({"role": "assistant", "content": self._strip_trailing(text[start:])})
                open_response = True
                break
            messages.append({"role": turn.role, "content": text[start:end]})
            position = end + len(turn.close_core)
            if turn.close_tail and text.startswith(turn.close_tail, position):
                position += len(turn.close_tail)
        if not messages or messages[-1]["role"] != "assistant":
            raise LatentrmError(
                f"{where}: no assistant response found after the prompt (expected "
                f"{self.assistant.open!r} followed by the response); send the full prompt + response text"
            )
        if not any(m["role"] == "user" for m in messages[:-1]):
            raise LatentrmError(f"{where}: no user turn before the response; the prompt is empty")
        prompt, response = messages[:-1], messages[-1]["content"]
        rendered = render_for_scoring(self.tokenizer, prompt, response).text
        normalised = self._strip_trailing(self._strip_padding(query))
        roundtrip = rendered == normalised or (open_response and rendered.startswith(normalised))
        if not roundtrip:
            roundtrip = self._strip_trailing(rendered) == normalised
        return SplitQuery(prompt, response, roundtrip)
