"""Data: minids loaders, batching and formatting."""
from nanoseek.data.batching import window_batcher
from nanoseek.data.chars import CharVocab

__all__ = ["window_batcher", "CharVocab"]
