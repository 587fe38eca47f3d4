"""The LLM layer: versioned prompts with their parsers (:mod:`.prompts`), the prompt budget rule
(:mod:`.budget`), and the one module that builds ``ray.data.llm`` processors (:mod:`.engine`)."""
