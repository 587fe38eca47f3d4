"""One career record -> the steps of a predictor -> a ranked answer that is always a valid O*NET code.

The record's titles are resolved as ``prepare`` resolves them (:func:`jobpred.predict.records.resolve_history`);
everything after that is the :class:`jobpred.predict.predictor.Predictor` that batch prediction runs too
(budget, prompts, parsing, ranking). Only the model call is this module's: ``generate`` is an async
function ``(model_id, messages, sampling) -> text`` (the Serve ingress sends it to the vLLM replicas, with
``"<base>:<adapter>"`` naming a LoRA adapter; unit tests pass a scripted one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from jobpred.config import ANSWER_MODES, REASON_SWAPS, PredictConfig
from jobpred.llm.budget import PromptTooLong
from jobpred.predict.answers import AnswerRanker
from jobpred.predict.predictor import Predictor, State, StepRequest
from jobpred.predict.records import resolve_history
from jobpred.predict.steps import PREDICTORS
from jobpred.schema import CareerRecord
from jobpred.serving.schemas import BadRequest

SERVED = tuple(name for name in PREDICTORS if name not in REASON_SWAPS)
"""The predictors a request may name: all but the reason-swap arms, which need another person's reason."""

Generate = Callable[[str, list[dict], dict], Awaitable[str]]
NO_RANKED = ("the engine replicas serve LoRA adapters, and vLLM 0.32 cannot compute prompt logprobs with LoRA "
             "on (vllm-project/vllm#29955); use answer_mode free, constrained or choice, or serve the base model alone")
Score = Callable[[str, list[dict], int], Awaitable["float | None"]]
"""The 'ranked' mode's model call: ``(model_id, messages, score_from) -> log P(prompt tokens from score_from on)``."""


def default_predictor(adapters: set[str]) -> str:
    return "joint" if "joint" in adapters else "zero-shot"


class PredictService:
    """The predictors of one ingress replica (built once: the tokenizer, the ranker), over its adapters."""

    def __init__(self, *, model_id: str, adapters: set[str], generate: Generate, count: Callable[[list[dict]], int],
                 context: int, predict: PredictConfig, ranker: AnswerRanker, temperature: float = 0.0,
                 related_k: int = 10, default: str | None = None, chat_template_kwargs: dict | None = None,
                 history_format: str = "compact", score: Score | None = None) -> None:
        if predict.answer_mode == "ranked" and score is None:
            raise ValueError(f"predict.answer_mode 'ranked' is not available here: {NO_RANKED}")
        self.model_id, self.adapters, self.generate, self.score = model_id, set(adapters), generate, score
        self.ranker, self.temperature, self.related_k = ranker, temperature, related_k
        self.predictors = {name: Predictor(name, predict, ranker, count, context, history_format)
                           for name in SERVED}
        # a request may ask for another answer mode (``?answer_mode=``): the same predictors in that mode
        self._modes = {predict.answer_mode: self.predictors}
        self._build = lambda mode: {name: Predictor(name, predict.model_copy(update={"answer_mode": mode}), ranker,
                                                    count, context, history_format) for name in SERVED}
        self.default = default or default_predictor(self.adapters)
        self.chat_template_kwargs = chat_template_kwargs
        # The tokenizer and the title normaliser are not thread-safe: one worker thread does all the
        # CPU-side preparation, off the event loop.
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobpred-prep")

    def available(self) -> list[str]:
        """Predictors whose adapters are all present."""
        return [n for n, p in self.predictors.items() if all(a in self.adapters for a in p.adapters)]

    def resolve(self, name: str | None) -> str:
        name = name or self.default
        if name not in self.predictors:
            raise BadRequest(422, "predictor", f"unknown predictor {name[:60]!r}; expected one of {sorted(SERVED)}")
        missing = [a for a in self.predictors[name].adapters if a not in self.adapters]
        if missing:
            raise BadRequest(404, "predictor", f"{name!r} needs adapter(s) {missing}, which this run has not "
                             f"trained; available predictors: {self.available()}")
        return name

    def resolve_mode(self, mode: str | None) -> str:
        """The answer mode of a request (None: the configured one); BadRequest naming ``answer_mode``."""
        if mode is None:
            return next(iter(self._modes))
        if mode not in ANSWER_MODES:
            raise BadRequest(422, "answer_mode", f"unknown answer mode {mode[:40]!r}; expected one of "
                             f"{', '.join(ANSWER_MODES)}")
        if mode == "ranked" and self.score is None:
            raise BadRequest(422, "answer_mode", f"'ranked' is not available on this server: {NO_RANKED}")
        if mode not in self._modes:
            self._modes[mode] = self._build(mode)
        return mode

    def _start(self, record: CareerRecord, predictor: str) -> State:
        jobs = resolve_history(record, self.ranker.normalizer, self.ranker.taxonomy)
        try:
            return self.predictors[predictor].start([e.model_dump() for e in record.education], jobs)
        except PromptTooLong as exc:
            raise BadRequest(422, "experience", f"the most recent job alone is too long for the model: {exc}") from None

    async def prepare(self, record: CareerRecord, predictor: str) -> State:
        """The record's titles resolved and its history fitted (off the event loop); BadRequest when even the
        most recent job does not fit."""
        return await asyncio.get_running_loop().run_in_executor(self._prep, self._start, record, predictor)

    def _sampling(self, req: StepRequest) -> dict:
        sampling = {"temperature": self.temperature, "max_tokens": req.max_tokens,
                    "continue_final_message": req.prefill, "add_generation_prompt": not req.prefill}
        if self.chat_template_kwargs:
            sampling["chat_template_kwargs"] = dict(self.chat_template_kwargs)
        if req.regex is not None:
            sampling["regex"] = req.regex
        return sampling

    def _model(self, adapter: str | None) -> str:
        return self.model_id if adapter is None else f"{self.model_id}:{adapter}"

    async def _ranked(self, p: Predictor, state: State):
        """The 'ranked' mode: every candidate title scored concurrently, then ranked as in batch prediction."""
        loop = asyncio.get_running_loop()

        def plan():
            requests = p.score_requests(state)
            return requests, p.count(requests[0].prefix) if requests else 0

        requests, start = await loop.run_in_executor(self._prep, plan)
        scores = await asyncio.gather(*(self.score(self._model(r.adapter), r.messages, start) for r in requests))
        return p.finish_ranked(state, {r.code: s for r, s in zip(requests, scores)})

    async def predict(self, record: CareerRecord, predictor: str, state: State, mode: str | None = None) -> dict:
        """Run the predictor's steps on a prepared record (in answer ``mode``, :meth:`resolve_mode`; None: the
        configured one) and shape the response."""
        started = time.perf_counter()
        p = self._modes[self.resolve_mode(mode)][predictor]
        while (req := p.request(state)) is not None:
            state = state.add(await self.generate(self._model(req.adapter), req.messages, self._sampling(req)))
        pred = await self._ranked(p, state) if p.ranked else p.finish(state)
        ranked = pred.ranked
        return {
            "person_id": record.person_id,
            "reason": pred.reason,
            "occupation": {"code": ranked.codes[0], "title": ranked.titles[0]},
            "top_k": [{"code": c, "title": t, "score": s}
                      for c, t, s in zip(ranked.codes, ranked.titles, ranked.scores)],
            "related": [{"code": c, "title": t} for c, t in self.ranker.related(ranked.codes[0], self.related_k)],
            "model": self.model_id,
            "adapter": "+".join(p.adapters) or None,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "predictor": predictor,
            "history_jobs_dropped": state.history_jobs_dropped,
            "answer_method": ranked.method,
        }
