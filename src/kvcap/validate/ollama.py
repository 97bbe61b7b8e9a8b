"""Ollama cases replay through the llama.cpp replay (they share llamacpp.jsonl and its field names)."""

from .llamacpp import replay

__all__ = ["replay"]
