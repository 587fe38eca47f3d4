"""The LLM predictors as chains of generation steps: which prompt, which adapter, how to read the output.

    for step in predictor_steps("two-model"):        # [Step('reason', 'reasoner'), Step('predict', 'predictor')]
        msgs = step_messages(step, history_json, reason)  # chat messages (the last may be an assistant prefill)
        parsed = parse_step(step, generated_text)         # StepParse(reason, answer, problem)

Batch prediction (:mod:`jobpred.predict.batch`) and the Serve application (``serve/``) both build their
requests here, so a predictor means the same thing offline and online.

| predictor          | steps (adapter)                                     | prompt                        |
|--------------------|-----------------------------------------------------|-------------------------------|
| ``zero-shot``        | answer (base model)                                 | history -> ``<answer>``         |
| ``zero-shot-reason`` | joint (base model)                                  | history -> reason, answer     |
| ``joint``            | joint (``joint``)                                     | the joint SFT prompt          |
| ``joint-dpo``        | joint (``joint-dpo``)                                 | the same                      |
| ``two-model``        | reason (``reasoner``) -> predict (``predictor``)        | reason prompt, then predictor prompt with the generated reason |
| ``two-model-dpo``    | reason (``reasoner-dpo``) -> predict (``predictor``)    | the same                      |
| ``predictor-no-reason`` | predict (``predictor``) with an empty reason     | the reason-swap experiment    |
| ``two-model-swapped`` | two-model's, step 2 given another person's reason | the reason swap (batch only) |

Prompts of fine-tuned steps are exactly their training prompts (:func:`jobpred.train.formats.build_messages`,
no prefill); base-model steps prefill the assistant turn (``<think>`` / ``<answer>``) so a small untuned
model starts inside the expected block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from jobpred.llm.prompts import (
    ANSWER_PREFILL,
    PROMPTS,
    STUDENT_PROMPT,
    THINK_PREFILL,
    answer_messages,
    answer_regex,
    candidate_messages,
    candidate_regex,
    parse_answer,
    parse_candidate,
    parse_reason,
    predictor_messages,
    reason_messages,
    reason_regex,
    student_messages,
    title_scoring,
)

StepKind = Literal["answer", "joint", "reason", "predict"]


@dataclass(frozen=True)
class Step:
    kind: StepKind
    adapter: str | None  # adapter name under RUN_DIR/adapters/, None: the base model

    @property
    def prefill(self) -> str:
        """Text the assistant turn starts with (base-model steps only; adapters saw none in training)."""
        if self.adapter is not None:
            return ""
        return {"answer": ANSWER_PREFILL, "joint": THINK_PREFILL}.get(self.kind, "")


PREDICTORS: dict[str, tuple[Step, ...]] = {
    "zero-shot": (Step("answer", None),),
    "zero-shot-reason": (Step("joint", None),),
    "joint": (Step("joint", "joint"),),
    "joint-dpo": (Step("joint", "joint-dpo"),),
    "two-model": (Step("reason", "reasoner"), Step("predict", "predictor")),
    "two-model-dpo": (Step("reason", "reasoner-dpo"), Step("predict", "predictor")),
    "predictor-no-reason": (Step("predict", "predictor"),),
    # two-model's steps; batch prediction gives its second step another person's reason (config.REASON_SWAPS)
    "two-model-swapped": (Step("reason", "reasoner"), Step("predict", "predictor")),
}
"""Predictor name -> its steps, in order. The last step's answer is the prediction."""


def predictor_steps(name: str) -> tuple[Step, ...]:
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; expected one of {sorted(PREDICTORS)}")
    return PREDICTORS[name]


def adapters_needed(name: str) -> list[str]:
    return [s.adapter for s in predictor_steps(name) if s.adapter is not None]


def generation_steps(name: str, answer_mode: str) -> tuple[Step, ...]:
    """The steps that generate text. In the 'ranked' mode the last step's answer is scored, not generated:
    an answer-only last step generates nothing, a joint step still writes its reason (its title is then
    scored after that reason)."""
    steps = predictor_steps(name)
    if answer_mode != "ranked" or steps[-1].kind == "joint":
        return steps
    return steps[:-1]


def stage_adapters(name: str, answer_mode: str) -> tuple[str | None, ...]:
    """The adapter of each engine stage a predictor uses, in order: its generation steps, then (ranked mode)
    the scoring of its last step."""
    adapters = tuple(s.adapter for s in generation_steps(name, answer_mode))
    return adapters + ((predictor_steps(name)[-1].adapter,) if answer_mode == "ranked" else ())


_STEP_PROMPT = {"answer": "answer", "joint": "candidate", "reason": "reason", "predict": "predictor"}
"""Base-model step kind -> the name of its prompt in :data:`jobpred.llm.prompts.PROMPTS` (an adapter's step
uses its training prompt, ``student-<kind>``)."""


def prompt_version(step: Step, history_format: str) -> str:
    name = _STEP_PROMPT[step.kind] if step.adapter is None else STUDENT_PROMPT[step.kind]
    return PROMPTS[name].tagged(history_format)


def step_messages(step: Step, history: str, reason: str | None = None) -> list[dict]:
    """Chat messages of one step for a history JSON (:func:`jobpred.llm.prompts.history_json`): a fine-tuned
    step's are its training prompt (:func:`jobpred.llm.prompts.student_messages`)."""
    if step.adapter is not None:
        return student_messages(step.kind, history, reason or "" if step.kind == "predict" else None)
    if step.kind == "answer":
        return answer_messages(history, prefill=bool(step.prefill))
    if step.kind == "joint":
        return candidate_messages(history, prefill=bool(step.prefill))
    if step.kind == "reason":
        return reason_messages(history)
    if step.kind == "predict":
        return predictor_messages(history, reason or "")
    raise ValueError(f"unknown step kind {step.kind!r}")


def score_messages(step: Step, history: str, reason: str | None, title: str) -> tuple[list[dict], list[dict]]:
    """The 'ranked' mode's prompt for one candidate title (:func:`jobpred.llm.prompts.title_scoring`): the
    step's messages, then its answer naming ``title`` (after ``reason`` for a joint step)."""
    return title_scoring(step_messages(step, history, reason), title, (reason or "") if step.kind == "joint" else None)


def step_max_tokens(step: Step, reason_tokens: int, answer_tokens: int) -> int:
    """Reason-writing steps get ``reason_tokens``, answer-only steps ``answer_tokens``."""
    return reason_tokens if step.kind in ("joint", "reason") else answer_tokens


def step_regex(step: Step, max_tokens: int, titles: list[str]) -> str:
    """The 'constrained' and 'choice' answer modes: a regex that forces the step's answer to be one of
    ``titles`` (every official title, or the candidates of 'choice'); a reason step, which names no
    occupation, is held to the reason block's format."""
    if step.kind == "joint":
        return candidate_regex(max_tokens, prefill=bool(step.prefill), titles=titles)
    if step.kind == "reason":
        return reason_regex(max_tokens)
    return answer_regex(titles, prefill=bool(step.prefill))


@dataclass(frozen=True)
class StepParse:
    reason: str | None
    answer: str | None  # raw answer text (not yet mapped to O*NET)
    problem: str | None  # why the output is not in the expected format (None: it is)
    alternatives: tuple[str, ...] = ()  # other phrases that may name the occupation, best first


def parse_step(step: Step, text: str) -> StepParse:
    """Read one step's generated text (the prefill, which the engine does not echo, is put back first).

    Lenient by design, because small models drift from the format: a reason block that is never closed
    still yields its text as the reason, and when there is no ``<answer>`` block the phrases that may name
    an occupation (quoted strings, what follows "is a" / "as a", the last line) become ``alternatives``
    for the answer ranker, which maps the first one it can to O*NET (and falls back when none maps).
    ``problem`` always says what was wrong with the format.
    """
    full = step.prefill + (text or "")
    if step.kind == "joint":
        parsed = parse_candidate(full)
        if parsed.ok:
            return StepParse(parsed.reason, parsed.answer, None)
        reason = parsed.reason or _open_reason(full)
        answer = parsed.answer or parse_answer(full)
        return StepParse(reason, answer, parsed.problem, () if answer else _phrases(full))
    if step.kind == "reason":
        reason = parse_reason(full)
        if reason:
            return StepParse(reason, None, None)
        return StepParse(_open_reason(full), None, "no closed <think> block")
    answer = parse_answer(full)
    if answer:
        return StepParse(None, answer, None)
    return StepParse(None, None, "no closed <answer> block", _phrases(full.replace("<answer>", "")))


def _open_reason(text: str) -> str | None:
    """The text of a reason block that was not closed (or of an output with no tags at all)."""
    body = text.split("<answer>", 1)[0].replace("<think>", "").replace("</think>", "").strip()
    return body or None


_QUOTED = re.compile(r"[\"“]([^\"”\n]{3,80})[\"”]")
_AFTER_IS = re.compile(r"\b(?:is|as|be|become|becomes|to)\s+(?:an?|the)\s+([A-Za-z][A-Za-z &/-]{2,80}?)(?=[.,;:\n)]|$)")


def _phrases(text: str) -> tuple[str, ...]:
    """Phrases of free text that may name the occupation: quoted strings, then "is a X" / "as a X"
    (last mention first: a conclusion comes at the end), then the last non-empty line."""
    body = text.split("</think>", 1)[1] if "</think>" in text else text
    found = [m.strip() for m in _QUOTED.findall(body)]
    found += [m.strip(" ,") for m in reversed(_AFTER_IS.findall(body))]
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if lines:
        found.append(lines[-1][:120])
    return tuple(dict.fromkeys(p for p in found if p))
