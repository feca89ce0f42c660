"""Interoperability with transformers: state-dict mappings and export of our models and tokenizers."""
