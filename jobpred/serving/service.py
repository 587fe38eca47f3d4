"""One career record -> the steps of a predictor -> a ranked answer that is always a valid O*NET code.

The same parts as batch prediction (:mod:`jobpred.predict`): the record's titles are resolved and its
history fenced and cut by the prompt budget rule (:func:`jobpred.predict.records.prompt_history`), each step
builds its prompt and parses its output (:mod:`jobpred.predict.steps`), and the last answer is mapped and
ranked by :class:`jobpred.predict.answers.AnswerRanker`. Only the model call differs: ``generate`` is an
async function ``(model_id, messages, sampling) -> text`` (the Serve ingress sends it to the vLLM
replicas, with ``"<base>:<adapter>"`` naming a LoRA adapter; unit tests pass a fake).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from jobpred.config import PredictConfig
from jobpred.llm.budget import PromptTooLong
from jobpred.predict.records import prompt_history
from jobpred.predict.steps import (
    PREDICTORS,
    Step,
    parse_step,
    predictor_steps,
    step_max_tokens,
    step_messages,
)
from jobpred.schema import CareerRecord
from jobpred.serving.schemas import BadRequest

Generate = Callable[[str, list[dict], dict], Awaitable[str]]


def default_predictor(adapters: set[str]) -> str:
    return "joint" if "joint" in adapters else "zero-shot"


class PredictService:
    """Holds the ranker, the token counter and the adapter list of one ingress replica."""

    def __init__(self, *, model_id: str, adapters: set[str], generate: Generate, count: Callable[[list[dict]], int],
                 context: int, predict: PredictConfig, ranker, temperature: float = 0.0, related_k: int = 10,
                 default: str | None = None, chat_template_kwargs: dict | None = None) -> None:
        self.model_id, self.adapters, self.generate = model_id, set(adapters), generate
        self.count, self.context, self.predict_cfg, self.ranker = count, context, predict, ranker
        self.temperature, self.related_k = temperature, related_k
        self.default = default or default_predictor(self.adapters)
        self.chat_template_kwargs = chat_template_kwargs
        # The tokenizer and the title normaliser are not thread-safe: one worker thread does all the
        # CPU-side preparation, off the event loop.
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobpred-prep")
        self._titles = None

    def available(self) -> list[str]:
        """Predictors whose adapters are all present."""
        return [n for n, steps in PREDICTORS.items() if all(s.adapter is None or s.adapter in self.adapters
                                                             for s in steps)]

    def resolve(self, name: str | None) -> str:
        name = name or self.default
        if name not in PREDICTORS:
            raise BadRequest(422, "predictor", f"unknown predictor {name[:60]!r}; expected one of {sorted(PREDICTORS)}")
        missing = [s.adapter for s in predictor_steps(name) if s.adapter and s.adapter not in self.adapters]
        if missing:
            raise BadRequest(404, "predictor", f"{name!r} needs adapter(s) {missing}, which this run has not "
                             f"trained; available predictors: {self.available()}")
        return name

    def _max_tokens(self, step: Step) -> int:
        return step_max_tokens(step, self.predict_cfg.max_tokens, self.predict_cfg.answer_max_tokens)

    def _history(self, record: CareerRecord, step: Step, reason: str | None) -> tuple[str, int, list]:
        try:
            return prompt_history(record, self.count, self.context, lambda h: step_messages(step, h, reason),
                                  self._max_tokens(step), self.ranker.normalizer, self.ranker.taxonomy)
        except PromptTooLong as exc:
            raise BadRequest(422, "experience", f"the most recent job alone is too long for the model: {exc}") from None

    async def prepare(self, record: CareerRecord, predictor: str) -> tuple[str, int, list]:
        """History of the first step (off the event loop); BadRequest when even one job does not fit."""
        first = predictor_steps(predictor)[0]
        return await asyncio.get_running_loop().run_in_executor(self._prep, self._history, record, first, None)

    def _sampling(self, step: Step) -> dict:
        max_tokens = self._max_tokens(step)
        sampling = {"temperature": self.temperature, "max_tokens": max_tokens,
                    "continue_final_message": bool(step.prefill), "add_generation_prompt": not step.prefill}
        if self.chat_template_kwargs:
            sampling["chat_template_kwargs"] = dict(self.chat_template_kwargs)
        if self.predict_cfg.answer_mode == "constrained":
            from jobpred.predict.steps import step_regex

            if self._titles is None:
                tax = self.ranker.taxonomy
                self._titles = sorted({tax.title(c) for c in tax.occupations})
            regex = step_regex(step, max_tokens, self._titles)
            if regex:
                sampling["regex"] = regex
        return sampling

    async def predict(self, record: CareerRecord, predictor: str, prepared: tuple[str, int, list]) -> dict:
        """Run the predictor's steps on a prepared record and shape the response."""
        started = time.perf_counter()
        history, dropped, codes = prepared
        steps = predictor_steps(predictor)
        reason = answer = None
        alternatives: tuple[str, ...] = ()
        for i, step in enumerate(steps):
            if i > 0:  # a later step's prompt carries the generated reason: fit the budget again
                history, more, _ = await asyncio.get_running_loop().run_in_executor(
                    self._prep, self._history, record, step, reason)
                dropped = max(dropped, more)
            model = self.model_id if step.adapter is None else f"{self.model_id}:{step.adapter}"
            text = await self.generate(model, step_messages(step, history, reason), self._sampling(step))
            parsed = parse_step(step, text)
            reason = parsed.reason or reason
            answer, alternatives = parsed.answer, parsed.alternatives
        # the alternatives too, as batch prediction ranks them: free text must map the same online
        ranked = self.ranker.rank(answer, codes, alternatives)
        return {
            "person_id": record.person_id,
            "reason": reason,
            "occupation": {"code": ranked.codes[0], "title": ranked.titles[0]},
            "top_k": [{"code": c, "title": t, "score": s}
                      for c, t, s in zip(ranked.codes, ranked.titles, ranked.scores)],
            "related": [{"code": c, "title": t} for c, t in self.ranker.related(ranked.codes[0], self.related_k)],
            "model": self.model_id,
            "adapter": "+".join(s.adapter for s in steps if s.adapter) or None,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "predictor": predictor,
            "history_jobs_dropped": dropped,
            "answer_method": ranked.method,
        }
