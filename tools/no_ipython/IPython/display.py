"""`display`, `Markdown`, `HTML` and `Image` that print, for scripts run where IPython is not installed."""
from __future__ import annotations


class Markdown:
    def __init__(self, data: str = "", **_: object):
        self.data = data

    def __str__(self) -> str:
        return self.data


HTML = Markdown


class Image(Markdown):
    def __init__(self, data: object = None, **_: object):
        super().__init__(f"[image {data!r}]" if isinstance(data, str) else "[image]")


def display(*objs: object, **_: object) -> None:
    for obj in objs:
        print(obj)
