"""What each adapter is trained on: prompt, target text, token ids with the loss mask, and the cutoff rule.

    feats = sft_features(tokenizer, "joint", education, jobs, reason, title, max_length=2048)
    feats.input_ids, feats.labels       # labels are -100 on every prompt token: loss on the target only

Roles (``ROLES``) and their texts; prompts are built by the SAME builders that generation and prediction
use, so an adapter is trained on exactly the tokens it will be prompted with:

| role          | prompt (:func:`jobpred.llm.prompts.student_messages`) | target (:mod:`jobpred.llm.prompts`)                            |
|---------------|-------------------------------------------------------|----------------------------------------------------------------|
| ``joint``     | ``joint`` (history)                                   | :func:`joint_output`: ``<think>\\nreason\\n</think>\\n<answer>true title</answer>`` |
| ``reasoner``  | ``reason`` (history)                                  | :func:`reason_output`: ``<think>\\nreason\\n</think>``            |
| ``predictor`` | ``predict`` (history + oracle reason)                 | :func:`answer_output`: ``<answer>true title</answer>``          |

The students' prompts are short (the task in one line, the same fences as the teacher's): an adapter learns
the format from its targets, and the base model's instruction block would be over half of every training
sequence. They and the target builders live in :mod:`jobpred.llm.prompts` (the prediction steps use the
same ones); each role's prompt is ``PROMPTS[ROLE_PROMPT[role]]``, whose version (:func:`role_prompt_version`)
every adapter records.

Tokens. The prompt is the model's own chat template with the generation prompt (``add_generation_prompt``,
plus ``chat_template_kwargs``), exactly what vLLM sends; the target is the target text tokenised without
special tokens, followed by the tokenizer's ``eos_token`` (the end-of-turn token of chat models, so the
adapter learns to stop). For chat templates of the ``<|im_start|>`` family this equals the template's own
rendering of the assistant turn (a unit test checks it on the default model).

Cutoff rule (``max_length`` tokens for prompt + target): the target is never cut. If the prompt is too
long, the oldest history jobs are dropped until prompt + target fit (:func:`jobpred.llm.budget.fit_history`,
the rule the teacher's prompts follow); ``dropped_jobs`` records how many. An example that does not fit
even with only its most recent job is skipped (``None``) and counted by the caller. For DPO the longer
of the two completions sets the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobpred.llm.budget import PromptTooLong, fit_history
from jobpred.llm.prompts import (
    PROMPTS,
    STUDENT_PROMPT,
    answer_output,
    joint_output,
    parse_candidate,
    reason_output,
    student_messages,
)

ROLES = ("joint", "reasoner", "predictor")
IGNORE = -100  # label of a token that carries no loss (torch cross_entropy's ignore_index)

ROLE_STUDENT = {"joint": "joint", "reasoner": "reason", "predictor": "predict"}
"""Role -> its kind of :func:`jobpred.llm.prompts.student_messages` (the prediction step it serves)."""
ROLE_PROMPT = {role: STUDENT_PROMPT[kind] for role, kind in ROLE_STUDENT.items()}
"""Role -> the name of its prompt in :data:`jobpred.llm.prompts.PROMPTS`."""


def role_prompt_version(role: str, history_format: str) -> str:
    """The version of ``role``'s prompt with its history rendering, recorded with every adapter (bumped when
    the prompt's wording changes)."""
    if role not in ROLE_PROMPT:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    return PROMPTS[ROLE_PROMPT[role]].tagged(history_format)


def target_text(role: str, reason: str, title: str) -> str:
    """The SFT target of ``role``; ``title`` is the true O*NET title."""
    if role == "joint":
        return joint_output(reason, title)
    if role == "reasoner":
        return reason_output(reason)
    if role == "predictor":
        return answer_output(title)
    raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")


def build_messages(role: str, history: str, reason: str | None = None) -> list[dict]:
    """The prompt of ``role`` for a history (and, for the predictor, a reason)."""
    if role not in ROLE_STUDENT:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    return student_messages(ROLE_STUDENT[role], history, reason)


def preference_target(role: str, output: str) -> str | None:
    """A DPO side in the role's format: joint keeps the whole output; the reasoner keeps its think block.
    None when the output has no reason (the pair cannot be used)."""
    if role == "joint":
        return output
    if role == "reasoner":
        reason = parse_candidate(output).reason
        return reason_output(reason) if reason else None
    raise ValueError(f"DPO trains the joint model or the reasoner, not {role!r}")


# ---- tokens -------------------------------------------------------------------------------------------


def prompt_ids(tokenizer, messages: list[dict], chat_template_kwargs: dict | None = None) -> list[int]:
    """Token ids of the prompt exactly as an engine builds it (chat template + generation prompt)."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                        **(chat_template_kwargs or {}))
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def target_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a target: the text, then the end-of-turn (eos) token."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token: cannot mark the end of the target")
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]


def fit_prompt(tokenizer, role: str, education: list[dict] | None, jobs: list[dict], reason: str | None,
               target_len: int, max_length: int, chat_template_kwargs: dict | None = None,
               history_format: str = "compact") -> tuple[list[int], int] | None:
    """(prompt ids, jobs dropped) for the most recent jobs whose prompt fits ``max_length - target_len``;
    None when even the most recent job alone does not fit."""
    def count(messages: list[dict]) -> int:
        return len(prompt_ids(tokenizer, messages, chat_template_kwargs))

    try:
        history, dropped, _ = fit_history(count, max_length, lambda h: build_messages(role, h, reason),
                                          education, jobs, target_len, history_format)
    except PromptTooLong:
        return None
    return prompt_ids(tokenizer, build_messages(role, history, reason), chat_template_kwargs), dropped


@dataclass(frozen=True)
class SftFeatures:
    input_ids: list[int]  # prompt + target, at most max_length
    labels: list[int]  # IGNORE on the prompt, the target's ids on the target
    prompt_len: int
    dropped_jobs: int


def sft_features(tokenizer, role: str, education: list[dict] | None, jobs: list[dict], reason: str, title: str,
                 max_length: int, chat_template_kwargs: dict | None = None, history_format: str = "compact",
                 ) -> SftFeatures | None:
    """Token ids and loss mask of one SFT example under the cutoff rule (None: skipped, too long)."""
    target = target_ids(tokenizer, target_text(role, reason, title))
    fitted = fit_prompt(tokenizer, role, education, jobs, reason, len(target), max_length, chat_template_kwargs,
                        history_format)
    if fitted is None:
        return None
    prompt, dropped = fitted
    return SftFeatures(prompt + target, [IGNORE] * len(prompt) + target, len(prompt), dropped)


@dataclass(frozen=True)
class PreferenceFeatures:
    prompt_ids: list[int]  # the keys TRL's DataCollatorForPreference expects
    chosen_ids: list[int]
    rejected_ids: list[int]
    dropped_jobs: int


def preference_features(tokenizer, role: str, education: list[dict] | None, jobs: list[dict], chosen: str,
                        rejected: str, max_length: int, chat_template_kwargs: dict | None = None,
                        history_format: str = "compact") -> PreferenceFeatures | None:
    """Token ids of one DPO pair (prompt shared by both sides) under the cutoff rule (None: skipped)."""
    c, r = target_ids(tokenizer, chosen), target_ids(tokenizer, rejected)
    fitted = fit_prompt(tokenizer, role, education, jobs, None, max(len(c), len(r)), max_length,
                        chat_template_kwargs, history_format)
    if fitted is None:
        return None
    return PreferenceFeatures(fitted[0], c, r, fitted[1])
