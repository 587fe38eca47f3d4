"""The ONE module of jobpred that imports ``ray.llm._internal``: the Ray internals the Serve side needs.

Everything here is private to Ray and was written against **Ray 2.60.0** (pinned as
``ray[data,train,serve]==2.60.0`` in pyproject.toml); Ray may move, rename or change any of it in any
release. Nothing else in jobpred imports ``ray.llm._internal`` (``grep -rn "from ray.llm._internal"``: this
file must be the only hit), so on a Ray upgrade check this file and the uses listed below. (Ray's internal
column names of ray.data.llm processors are named once in :mod:`jobpred.llm.engine`, ``RAY_VLLM_COLUMNS``.)

What jobpred needs, and why there is no public equivalent in 2.60.0:

- ``LoraModelLoader``, ``DiskMultiplexConfig``, ``global_id_manager``: the stock LoRA loader of
  ray.serve.llm only reads cloud buckets (``lora_config.dynamic_lora_loading_path`` must be s3/gs/azure).
  :class:`jobpred.serving.deployment.LocalLoraLoader` subclasses it to read adapters from the run directory;
  it is injected with ``build_llm_deployment(..., bind_kwargs={"model_downloader": ...})``. It overrides
  ``load_model_from_config(lora_model_id, llm_config)``, uses the ``disk_cache`` dict, builds a
  ``DiskMultiplexConfig(model_id, max_total_tokens, local_path, lora_assigned_int_id)`` and takes the id from
  ``global_id_manager.next()`` (vLLM needs a per-process unique int per adapter).
- ``get_base_model_id``, ``get_lora_id``: how ray.serve.llm splits a model id ``<base>:<adapter>``; jobpred
  must split ids exactly as the router does.
- ``OpenAiIngress``: the OpenAI router (handles of the engine deployments, multiplexed LoRA routing).
  :class:`jobpred.serving.deployment.JobpredIngress` subclasses it to serve the jobpred routes from the same
  replica, and calls its private ``_process_llm_request(req, call_method=, raw_request=)``,
  ``_get_response(body=, call_method=)`` (an async generator) and ``_model_cards``.
  (``ray.serve.llm.ingress.OpenAiIngress`` is a public subclass, but the private members are the same.)
- ``ChatCompletionRequest``, ``CompletionRequest``, ``ErrorResponse``, ``OpenAIHTTPException``,
  ``to_model_metadata``: the request models the router validates, the error object its engine stream yields
  (an ``isinstance`` check, so the internal class, not the public subclass of
  ``ray.serve.llm.openai_api_models``), the exception it raises for a rejected request (``status_code``,
  ``message``, ``type``), and the model card of an ``LLMConfig`` the ingress is bound with.

On a Ray upgrade: every import below still resolves (``python -c "import jobpred.serving.deployment"``);
the signatures and attributes named above are unchanged; whether a public API now covers a local LoRA path
(then drop ``LocalLoraLoader``) or the ingress hooks; then run tests/test_serve_integration.py (a real
engine, LoRA adapters, the OpenAI routes).
"""

from __future__ import annotations

from ray.llm._internal.common.models import global_id_manager
from ray.llm._internal.common.utils.lora_utils import get_base_model_id, get_lora_id
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorResponse,
    OpenAIHTTPException,
    to_model_metadata,
)
from ray.llm._internal.serve.core.ingress.ingress import OpenAiIngress
from ray.llm._internal.serve.utils.lora_serve_utils import LoraModelLoader

__all__ = [
    "ChatCompletionRequest", "CompletionRequest", "DiskMultiplexConfig", "ErrorResponse", "LoraModelLoader",
    "OpenAIHTTPException", "OpenAiIngress", "get_base_model_id", "get_lora_id", "global_id_manager",
    "to_model_metadata",
]
