"""A stand-in for IPython on machines that have none (the GPU machine runs notebooks as scripts).

`tools/run_full.py` puts this folder on PYTHONPATH only when the real IPython cannot be imported, so
`from IPython.display import Markdown, display` in a chapter prints the Markdown as text there.
"""

version_info = (9, 0, 0, "nanoseek-stand-in")  # matplotlib reads it; >= 8.24 takes its modern path


def get_ipython() -> None:
    """No interactive shell here (matplotlib asks when IPython is in sys.modules)."""
    return None
