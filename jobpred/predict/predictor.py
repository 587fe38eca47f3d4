"""One LLM predictor, end to end except the model call: steps, prompts, token budget, parsing, ranking.

    p = Predictor("two-model", cfg.predict, ranker, count, context)
    state = p.start(education, jobs)            # the budget rule; PromptTooLong when one job does not fit
    while (req := p.request(state)) is not None:
        state = state.add(generate(req))        # the injected model call: text for one StepRequest
    prediction = p.finish(state)                # reason, answer, ranked valid O*NET codes, method, ...

    prediction = await p.run(education, jobs, generate)   # the same loop, for an async ``generate``

Batch prediction (:mod:`jobpred.predict.batch`) runs the loop as a Ray Data pipeline -- ``start`` and the
first ``request`` in one stage, a vLLM stage, ``request`` again for two-step predictors, a vLLM stage,
``finish`` -- and the Serve app (:mod:`jobpred.serving.service`) awaits the engine replicas inside ``run``.
Both hold one object of this class per predictor, so a record gets the same prompts, the same budget and
the same ranked answer offline and online (tests/test_predict.py feeds both the same scripted outputs).

In the 'ranked' answer mode only the reason is generated (``request`` stops there); then
``score_requests`` gives one prompt per candidate occupation and ``finish_ranked`` ranks the candidates by
the scores the engine returns (:mod:`jobpred.predict.likelihood`).

Budget rule (one for every step): the first prompt plus the tokens of *every* step's output must fit the
context, so a two-step predictor also reserves room for the reason it will carry into its second prompt
(``max_tokens`` + ``answer_max_tokens``); the oldest jobs are dropped first (:func:`jobpred.llm.budget.fit_history`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from jobpred.config import PredictConfig
from jobpred.llm.budget import fit_history
from jobpred.predict.answers import FALLBACK_METHODS, AnswerRanker, RankedAnswer
from jobpred.predict.likelihood import candidate_codes, rank_by_likelihood
from jobpred.predict.steps import (
    adapters_needed,
    generation_steps,
    parse_step,
    predictor_steps,
    prompt_version,
    score_messages,
    step_max_tokens,
    step_messages,
    step_regex,
)


@dataclass(frozen=True)
class StepRequest:
    """What to generate next: which adapter (None: the base model), the chat messages, the output budget and,
    in the 'constrained' and 'choice' answer modes, the regex the output must match. ``prefill``: the last message is an
    assistant turn the model continues (base-model steps), not a new turn."""

    adapter: str | None
    messages: list[dict]
    max_tokens: int
    regex: str | None
    prefill: bool


@dataclass(frozen=True)
class ScoreRequest:
    """The 'ranked' mode: score one candidate's title. ``messages`` end with an assistant turn that ends with
    the answer block naming it; the title's likelihood is that of the tokens from ``prefix``'s length on
    (``prefix``: the same messages cut before the title, so its token count is where scoring starts)."""

    code: str
    adapter: str | None
    messages: list[dict]
    prefix: list[dict]


@dataclass(frozen=True)
class State:
    """One record on its way through a predictor's steps: the fitted history and the texts generated so far."""

    history_json: str
    history_jobs_dropped: int
    history_codes: tuple[str | None, ...]  # O*NET codes of every job, oldest first (the ranker's fall-back)
    texts: tuple[str, ...] = ()

    def add(self, text: str | None) -> State:
        return dataclasses.replace(self, texts=(*self.texts, text or ""))


@dataclass(frozen=True)
class Prediction:
    reason: str | None
    answer_text: str | None  # the model's answer before mapping to O*NET (None: none could be read)
    ranked: RankedAnswer  # valid O*NET codes, titles, scores, best first; ``ranked.method`` says how
    format_problem: str | None
    raw_output: str
    error: str | None


class Predictor:
    """One predictor by name (:data:`jobpred.predict.steps.PREDICTORS`) with its settings and ranker."""

    def __init__(self, name: str, cfg: PredictConfig, ranker: AnswerRanker, count: Callable[[list[dict]], int],
                 context: int, history_format: str = "compact") -> None:
        self.name, self.steps, self.cfg, self.ranker = name, predictor_steps(name), cfg, ranker
        self.count, self.context, self.history_format = count, context, history_format
        self.adapters = adapters_needed(name)
        self.ranked = cfg.answer_mode == "ranked"
        self.gen_steps = generation_steps(name, cfg.answer_mode)  # a prefix of ``steps``
        self.prompt_version = ",".join(prompt_version(s, history_format) for s in self.steps)
        self._titles = ranker.taxonomy.titles() if cfg.answer_mode == "constrained" else None
        self.choice = cfg.answer_mode == "choice"
        # A regex-held answer needs room for the longest title it may be held to, counted at one token per
        # character: under a regex the model may spell a title in far more tokens than its tokenizer would
        # (an untuned model went letter by letter, 33 tokens for 46 characters). Generation ends where the
        # regex does, so the room costs only prompt budget; cut short, the answer block stays open.
        self._answer_room = 0
        if self._titles or self.choice:
            self._answer_room = max(map(len, ranker.taxonomy.titles())) + len("</think>\n<answer></answer>")

    def _budget(self, i: int) -> int:
        """Step ``i``'s configured output budget (``max_tokens`` or ``answer_max_tokens``)."""
        return step_max_tokens(self.steps[i], self.cfg.max_tokens, self.cfg.answer_max_tokens)

    def max_tokens(self, i: int) -> int:
        """Step ``i``'s output budget with the room of a regex-held answer: an answer step gets at least that
        room, a joint step that room on top of its reason's budget."""
        kind = self.steps[i].kind
        if not self._answer_room or kind == "reason":
            return self._budget(i)
        return max(self._budget(i), self._answer_room) if kind != "joint" else self._budget(i) + self._answer_room

    def start(self, education: list[dict] | None, jobs: list[dict]) -> State:
        """Fit the history to the budget; raises :class:`jobpred.llm.budget.PromptTooLong`."""
        first = self.steps[0]
        reserve = self.max_tokens(0) + (self.cfg.max_tokens + self.max_tokens(len(self.steps) - 1)
                                        if len(self.steps) > 1 else 0)
        history, dropped, _ = fit_history(self.count, self.context, lambda h: step_messages(first, h, ""),
                                          education, jobs, reserve, self.history_format)
        return State(history, dropped, tuple(j.get("onet_code") for j in jobs))

    def request(self, state: State) -> StepRequest | None:
        """The next step's request, None when every step has its text."""
        i = len(state.texts)
        if i == len(self.gen_steps):
            return None
        step = self.steps[i]
        reason = parse_step(self.steps[0], state.texts[0]).reason or "" if i else ""
        titles = self._titles or (self.choices(state) if self.choice else None)
        regex = step_regex(step, self._budget(i), titles) if titles else None  # the reason's share: the budget
        return StepRequest(step.adapter, step_messages(step, state.history_json, reason), self.max_tokens(i), regex,
                           bool(step.prefill))

    def choices(self, state: State) -> list[str]:
        """The 'choice' mode's titles, the only ones the answer may name: the ranked mode's candidates
        (:func:`jobpred.predict.likelihood.candidate_codes`, without a generated answer); every official title
        when the history has no known occupation to start from."""
        codes = candidate_codes(self.ranker.taxonomy, list(state.history_codes), None, self.cfg.rank_candidates)
        return [self.ranker.taxonomy.title(c) for c in codes] or self.ranker.taxonomy.titles()

    def finish(self, state: State | None, error: str | None = None, history_codes=()) -> Prediction:
        """Parse the texts and rank the answer. With an ``error`` (or texts missing) the answer counts as
        unread and the ranker falls back (``ranked.method`` says which fall-back); ``history_codes`` serve
        the fall-back when there is no state (the prompt did not fit)."""
        texts = state.texts if state else ()
        parsed = [parse_step(s, t) for s, t in zip(self.steps, texts)]
        complete = len(parsed) == len(self.steps) and not error
        answer = parsed[-1].answer if complete else None
        alternatives = parsed[-1].alternatives if complete else ()
        codes = list(state.history_codes if state else history_codes)
        return Prediction(
            reason=next((p.reason for p in parsed if p.reason), None),
            answer_text=answer,
            ranked=self.ranker.rank(answer, codes, alternatives),
            format_problem=next((p.problem for p in parsed if p.problem), None),
            raw_output="\n---\n".join(texts),
            error=error,
        )

    # ---- the 'ranked' answer mode ------------------------------------------------------------------------

    def _generated(self, state: State | None, error: str | None) -> tuple[list, RankedAnswer]:
        texts = state.texts if state else ()
        parsed = [parse_step(s, t) for s, t in zip(self.gen_steps, texts)]
        complete = len(parsed) == len(self.gen_steps) and not error
        last = parsed[-1] if complete and parsed and self.gen_steps[-1].kind == "joint" else None
        codes = list(state.history_codes if state else ())
        return parsed, self.ranker.rank(last.answer if last else None, codes, last.alternatives if last else ())

    def score_requests(self, state: State) -> list[ScoreRequest]:
        """After the generation steps: one request per candidate occupation (the generated answer's, when it
        mapped, joins the history's; :func:`jobpred.predict.likelihood.candidate_codes`)."""
        parsed, free = self._generated(state, None)
        generated = free.codes[0] if free.method not in FALLBACK_METHODS else None
        reason = next((p.reason for p in parsed if p.reason), None)
        step = self.steps[-1]
        codes = candidate_codes(self.ranker.taxonomy, list(state.history_codes), generated, self.cfg.rank_candidates)
        requests = []
        for code in codes:
            messages, prefix = score_messages(step, state.history_json, reason, self.ranker.taxonomy.title(code))
            requests.append(ScoreRequest(code, step.adapter, messages, prefix))
        return requests

    def finish_ranked(self, state: State | None, scores: dict[str, float | None], error: str | None = None,
                      history_codes=()) -> Prediction:
        """The candidates ranked by their scores (log P(title | prompt)); with none scored (an error, a prompt
        that did not fit), the free mode's ranking of what was generated, fall-backs included."""
        if state is None:
            state = State("", 0, tuple(history_codes))
        parsed, free = self._generated(state, error)
        ranked = rank_by_likelihood(self.ranker.taxonomy, scores, self.ranker.top_k) if not error else None
        if ranked is not None and len(ranked.codes) < self.ranker.top_k:
            fill = [c for c in free.codes if c not in ranked.codes][: self.ranker.top_k - len(ranked.codes)]
            ranked = RankedAnswer(ranked.codes + fill, ranked.titles + [self.ranker.taxonomy.title(c) for c in fill],
                                  ranked.scores + [0.0] * len(fill), ranked.method)
        last = parsed[-1] if parsed and self.gen_steps[-1].kind == "joint" else None
        return Prediction(
            reason=next((p.reason for p in parsed if p.reason), None),
            answer_text=ranked.titles[0] if ranked else (last.answer if last else None),
            ranked=ranked or free,
            format_problem=next((p.problem for p in parsed if p.problem), None),
            raw_output="\n---\n".join(state.texts),
            error=error,
        )

    async def run(self, education: list[dict] | None, jobs: list[dict],
                  generate: Callable[[StepRequest], Awaitable[str]],
                  score: Callable[[ScoreRequest], Awaitable[float | None]] | None = None) -> tuple[State, Prediction]:
        """Every step with an async ``generate`` (the Serve engine replicas), then :meth:`finish`; in the
        'ranked' mode the candidates are scored concurrently with ``score`` (log P(title | prompt))."""
        state = self.start(education, jobs)
        while (req := self.request(state)) is not None:
            state = state.add(await generate(req))
        if not self.ranked:
            return state, self.finish(state)
        requests = self.score_requests(state)
        scores = await asyncio.gather(*(score(r) for r in requests))
        return state, self.finish_ranked(state, {r.code: s for r, s in zip(requests, scores)})
