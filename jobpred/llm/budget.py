"""The prompt budget rule: a prompt plus its ``max_tokens`` must fit the model's context.

Rule (the same for the teacher and the factuality judge): keep the education entries and the most recent
``k`` history jobs for the largest ``k`` whose prompt fits, dropping the oldest jobs first; the number
dropped is recorded on the output row (``history_jobs_dropped``). When even the most recent job alone does
not fit, the unit of work is not sent to the model: it goes to the errors table with the token counts.

Prompts are counted with the model's own tokenizer and chat template (vLLM backend) or estimated from
characters (HTTP backend, ``http.chars_per_token``), against ``max_model_len`` / ``http.context_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable

from jobpred.config import LLMConfig
from jobpred.llm.prompts import history_json
from jobpred.models import resolve_model


class PromptTooLong(ValueError):
    """Even the smallest allowed prompt does not fit the context; the message has the numbers."""


class TokenCounter:
    """Counts the tokens of a chat prompt the way the engine will see it (loads the tokenizer once)."""

    def __init__(self, cfg: LLMConfig) -> None:
        self.cfg = cfg
        if cfg.backend == "vllm":
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
            self.context = cfg.max_model_len
        else:
            self.tokenizer = None
            self.context = cfg.http.context_tokens

    def __call__(self, messages: list[dict]) -> int:
        if self.tokenizer is None:
            chars = sum(len(m["content"]) for m in messages)
            return int(chars / self.cfg.http.chars_per_token) + 8 * len(messages)
        prefill = messages[-1]["role"] == "assistant"
        ids = self.tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=not prefill, continue_final_message=prefill,
            **(self.cfg.chat_template_kwargs or {}),
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # some tokenizers return a BatchEncoding
            ids = ids["input_ids"]
        return len(ids)


def fit_history(
    count: Callable[[list[dict]], int],
    context: int,
    build: Callable[[str], list[dict]],
    education: list[dict] | None,
    jobs: list[dict],
    max_tokens: int,
    history_format: str = "compact",
) -> tuple[str, int, int]:
    """(history_json, jobs_dropped, prompt_tokens) for the most recent jobs that fit ``context``.

    ``build`` turns a rendered history (:func:`jobpred.llm.prompts.history_json` in ``history_format``)
    into the chat messages. One tokenisation when everything fits (the
    common case), a binary search over the number of kept jobs otherwise.
    """
    budget = context - max_tokens

    def tokens(k: int) -> tuple[str, int]:
        text = history_json(education, jobs[len(jobs) - k:] if k else [], history_format)
        return text, count(build(text))

    n = len(jobs)
    text, used = tokens(n)
    if used <= budget:
        return text, 0, used
    lo, hi = 1, n - 1  # invariant: k = hi + 1 does not fit; find the largest k in [lo, hi] that fits
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        t, u = tokens(mid)
        if u <= budget:
            best, lo = (t, mid, u), mid + 1
        else:
            hi = mid - 1
    if best is None:
        _, one = tokens(min(1, n))
        raise PromptTooLong(
            f"prompt needs {one} tokens with only the most recent job; the budget is {budget} "
            f"(context {context} - max_tokens {max_tokens})"
        )
    text, kept, used = best
    return text, n - kept, used
