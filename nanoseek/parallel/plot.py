"""Timeline plots of pipeline schedules and an interactive explorer (chapter 9).

One row per rank; forwards, input-gradient backwards (B), weight-gradient backwards (W) and whole backwards
(B+W) in their own colours, darker for the second direction (DualPipe's second half of micro-batches,
DualPipeV's way back up). An overlapped F&B chunk is drawn as two half-height bars, F above B. White is bubble.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Patch

from nanoseek.parallel import schedules as S
from nanoseek.parallel.schedules import Op, Schedule
from nanoseek.parallel.simulator import Costs, Result, formula_bubble, simulate

COLORS = {  # (first direction, second direction)
    "F": ("#7fb3e0", "#2f6fb0"),
    "B": ("#f4b183", "#d0661f"),
    "BW": ("#f8cbad", "#c55a11"),
    "W": ("#a9d18e", "#548235"),
}


def direction(s: Schedule, op: Op) -> int:
    """0 for the first direction, 1 for the second (DualPipe's reverse micro-batches, DualPipeV's return)."""
    if s.name == "DualPipe":
        return int(op.mb >= s.n_micro // 2)
    if s.name == "DualPipeV":
        return int(op.stage >= s.n_ranks)
    return 0


def plot_timeline(result: Result, ax=None, title: str | None = None, labels: bool = True,
                  xlabel: str = "time (cost units)"):
    """Draw result's per-rank timeline on ax (a new figure if None); returns ax."""
    s = result.schedule
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 0.45 * s.n_ranks + 1.2))
    for r, tl in enumerate(result.timeline):
        for e in tl:
            parts = e.op.parts()
            for i, p in enumerate(parts):
                h = 0.8 / len(parts)
                y = r - 0.4 + (len(parts) - 1 - i) * h
                ax.broken_barh([(e.start, e.end - e.start)], (y, h), facecolors=COLORS[p.kind][direction(s, p)],
                               edgecolor="black", linewidth=0.4)
                if labels and e.end - e.start >= 0.6 * result.makespan / 60:
                    ax.text((e.start + e.end) / 2, y + h / 2, str(p.mb), ha="center", va="center", fontsize=6)
    ax.set_ylim(s.n_ranks - 0.5, -0.5)
    ax.set_yticks(range(s.n_ranks), [f"rank {r}" for r in range(s.n_ranks)])
    ax.set_xlim(0, result.makespan)
    ax.set_xlabel(xlabel)
    ax.set_title(title or f"{s.name}: {s.n_ranks} ranks, {s.n_micro} micro-batches, "
                          f"bubble {result.max_bubble:.3g}, makespan {result.makespan:.3g}", loc="left", fontsize=10)
    kinds = sorted({p.kind for tl in result.timeline for e in tl for p in e.op.parts()}, key="F B BW W".split().index)
    names = {"F": "F forward", "B": "B input grad", "W": "W weight grad", "BW": "B+W whole backward"}
    ax.legend(handles=[Patch(color=COLORS[k][0], label=names[k]) for k in kinds], loc="lower right",
              bbox_to_anchor=(1.0, 1.0), fontsize=7, ncol=len(kinds), frameon=False, borderaxespad=0.1)
    return ax


def explorer():
    """ipywidgets controls (schedule, ranks, micro-batches, F, B, W, F&B) that redraw the timeline and print
    the simulated and the table's bubble. Returns the widget (show it with `display`)."""
    import ipywidgets as w
    from IPython.display import display

    out = w.Output()
    controls = dict(
        name=w.Dropdown(options=["gpipe", "1f1b", "zb1p", "dualpipe", "dualpipev"], value="dualpipe"),
        n_ranks=w.IntSlider(value=8, min=2, max=16, step=2, description="ranks"),
        n_micro=w.IntSlider(value=20, min=2, max=64, step=2, description="micro-batches"),
        F=w.FloatSlider(value=1.0, min=0.25, max=3, step=0.25),
        B=w.FloatSlider(value=1.0, min=0.25, max=3, step=0.25),
        W=w.FloatSlider(value=1.0, min=0.0, max=3, step=0.25),
        fb=w.FloatSlider(value=3.0, min=0.5, max=9, step=0.25, description="F&B"),
    )

    def redraw(_=None):
        v = {k: c.value for k, c in controls.items()}
        out.clear_output(wait=True)
        with out:
            try:
                s = S.make(v["name"], v["n_ranks"], v["n_micro"])
            except ValueError as err:
                print(f"not a valid schedule: {err}")
                return
            c = Costs(v["F"], v["B"], v["W"], fb=v["fb"])
            r = simulate(s, c)
            plot_timeline(r)
            plt.show()
            print(f"simulated bubble {r.max_bubble:.2f} | table's formula {formula_bubble(s.name, s.n_stages, c):.2f}"
                  f" | peak activations {max(r.peak_activations)} chunks | stages per rank {max(r.param_stages)}")

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox(list(controls.values())[:3]), w.HBox(list(controls.values())[3:]), out])
    display(box)
    return box


def table(rows: list[dict]) -> str:
    """A Markdown table of rows (dicts with the same keys); floats to 4 significant digits."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
