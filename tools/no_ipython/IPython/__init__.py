"""A stand-in for IPython on machines that have none (the GPU machine runs notebooks as scripts).

`tools/run_full.py` puts this folder on PYTHONPATH only when the real IPython cannot be imported, so
`from IPython.display import Markdown, display` in a chapter prints the Markdown as text there.
"""


def get_ipython() -> None:
    """No interactive shell here (matplotlib asks when IPython is in sys.modules)."""
    return None
