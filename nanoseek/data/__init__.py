"""Data loaders: minids corpora, batching, chat formatting with loss masks."""
from nanoseek.data.stories import load_stories
from nanoseek.data.instructions import load_instructions
