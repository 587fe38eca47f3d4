"""Every versioned prompt, its parser and (for the judges) the JSON schema of its answer, in one place.

    msgs = candidate_messages(history_json, hinted_title=None, prefill=True)   # OpenAI chat messages
    parse_candidate("<think>...</think>\\n<answer>Nurse Practitioners</answer>")  # -> CandidateParse
    judge_messages("coherence", history_json, reason, target_title)
    parse_judgement("coherence", '{"temporal_order": "good", "logical_issues": 0, "score": 4}')
    PROMPTS["predictor"].tagged("compact")                                     # 'predictor/v2+compact'

Every output row, and every adapter, records the version of the prompt that made it with the history
rendering it used (``PROMPTS[name].tagged(history_format)``): change a prompt's wording and you bump its
version, so old and new rows never mix silently (and an adapter is never prompted with text it was not
trained on).

Modules: :mod:`.fences` (how untrusted data enters a prompt: JSON, neutralised, between marker lines),
:mod:`.generation` (teacher, adapter and predictor prompts, their parsers and training targets),
:mod:`.judge` (judge prompts and the pydantic models of their answers). Import from this package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jobpred.llm.prompts.fences import (
    HISTORY_FORMATS,
    dump_data,
    fence,
    history_format,
    history_json,
    neutralise_json,
    split_history,
)
from jobpred.llm.prompts.generation import (
    ANSWER_PREFILL,
    STUDENT_PROMPT,
    THINK_PREFILL,
    CandidateParse,
    answer_messages,
    answer_output,
    answer_regex,
    candidate_messages,
    candidate_regex,
    joint_output,
    parse_answer,
    parse_candidate,
    parse_reason,
    predictor_messages,
    reason_messages,
    reason_output,
    reason_regex,
    student_messages,
    title_scoring,
)
from jobpred.llm.prompts.judge import (
    CRITERIA,
    JUDGE_MODELS,
    JUDGE_SCHEMAS,
    CoherenceJudgement,
    FactualityJudgement,
    JudgementParseError,
    UtilityJudgement,
    judge_messages,
    parse_judgement,
)

__all__ = [
    "ANSWER_PREFILL",
    "CRITERIA",
    "HISTORY_FORMATS",
    "JUDGE_MODELS",
    "JUDGE_SCHEMAS",
    "PROMPTS",
    "STUDENT_PROMPT",
    "THINK_PREFILL",
    "CandidateParse",
    "CoherenceJudgement",
    "FactualityJudgement",
    "JudgementParseError",
    "PromptSpec",
    "UtilityJudgement",
    "answer_messages",
    "answer_output",
    "answer_regex",
    "candidate_messages",
    "candidate_regex",
    "dump_data",
    "fence",
    "history_format",
    "history_json",
    "joint_output",
    "judge_messages",
    "neutralise_json",
    "parse_answer",
    "parse_candidate",
    "parse_judgement",
    "parse_reason",
    "predictor_messages",
    "reason_messages",
    "reason_output",
    "reason_regex",
    "split_history",
    "student_messages",
    "title_scoring",
]


@dataclass(frozen=True)
class PromptSpec:
    name: str
    version: str
    parse: Callable
    schema: dict | None = None

    def tagged(self, history_format: str) -> str:
        """The version recorded on rows and adapters: the wording's version plus how the history was
        rendered (the same words over another rendering are other tokens)."""
        return f"{self.version}+{history_format}"


PROMPTS: dict[str, PromptSpec] = {
    "candidate": PromptSpec("candidate", "candidate-joint/v2", parse_candidate),
    "hinted": PromptSpec("hinted", "candidate-hinted/v2", parse_candidate),
    "answer": PromptSpec("answer", "answer-only/v2", parse_answer),
    "reason": PromptSpec("reason", "reason-only/v2", parse_reason),
    "predictor": PromptSpec("predictor", "predictor/v2", parse_answer),
    "student-joint": PromptSpec("student-joint", "student-joint/v1", parse_candidate),
    "student-reason": PromptSpec("student-reason", "student-reason/v1", parse_reason),
    "student-predictor": PromptSpec("student-predictor", "student-predictor/v1", parse_answer),
    **{c: PromptSpec(c, f"judge-{c}/v2", lambda text, _c=c: parse_judgement(_c, text), JUDGE_SCHEMAS[c])
       for c in CRITERIA},
}
"""Prompt name -> version, parser and (judges) schema. Candidate variants: 'candidate' (plain), 'hinted';
the two-model steps: 'reason', then 'predictor'; the fine-tuned adapters' short prompts: 'student-*'."""
