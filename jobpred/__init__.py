"""jobpred: next-occupation prediction with LLM-written reasons, on Ray.

The package is importable without torch, vLLM or Ray: heavy imports live inside the stages that use them.
Start with ``jobpred --help`` or the README.
"""

__version__ = "0.1.0"
