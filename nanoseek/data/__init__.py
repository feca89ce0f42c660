"""Data: minids loaders, batching, chat formatting with loss masks."""
from nanoseek.data.batching import window_batcher
from nanoseek.data.chars import CharVocab
from nanoseek.data.stories import load_stories
from nanoseek.data.instructions import load_instructions
from nanoseek.data.shakespeare import load_shakespeare, shakespeare_works

__all__ = ["window_batcher", "CharVocab", "load_stories", "load_instructions", "load_shakespeare", "shakespeare_works"]
