"""Whole models: the chapter-1 GPT, the modern decoder (chapters 4–7) and what builds on them."""
