"""The Serve application's library code (the entry points are ``jobpred serve`` and ``serve/app.py``).

- :mod:`.security`: API keys (``$JOBPRED_API_KEYS`` or a file), the Bearer check, the body-size limit.
- :mod:`.schemas`: what ``POST /v1/predict`` accepts (one career record or a batch) and returns.
- :mod:`.service`: one record -> steps of a predictor -> a ranked, always-valid O*NET answer.
- :mod:`.metrics`: the request metrics (Prometheus ``/metrics`` and Ray's), defined once.
- :mod:`.app`: the FastAPI application (routes, middleware, metrics) over a backend.
- :mod:`.deployment`: the Ray Serve side: ray.serve.llm engine replicas, LoRA from the run directory, the
  ingress deployment, :func:`~.deployment.build_application`.

Only :mod:`.deployment` (and :mod:`.ray_llm`, the one home of ``ray.llm`` internals) imports Ray Serve and
vLLM; the rest is testable without them.
"""
