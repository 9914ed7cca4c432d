"""Captioners: VLM backends (transformers in-process, OpenAI-compatible HTTP) and the prompts they use."""
