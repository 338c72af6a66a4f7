"""What `bizoo bench` writes: the table lines of an op benchmark, the JSON record, the plots.

A row of an op benchmark holds, per mode ("fwd", "fwdbwd"): <mode>_ms (the median), <mode>_peak_mib and
speedup_vs_<key>_<mode> for each ratio column (``registry.Ratio``: the baseline's ms / the row's ms, > 1 faster
than the baseline), then the benchmark's extra columns (``registry.Column``). A table line shows them in that order
after the shape columns (``registry.ShapeColumn``) and the method, then the status where it is not "ok"; "-" for a
value the row does not have. The JSON record (``--json``) is rewritten whole after each row, so a run that is
stopped leaves every row measured so far.

Standard library only at module level (matplotlib inside the plots).
"""

from __future__ import annotations

import json
import os

MODES = {"fwd": "fwd", "fwdbwd": "fwd+bwd"}  # JSON key -> column label


def write_json(path: str | None, payload: dict) -> None:
    """Write ``payload`` to ``path`` (no-op without one) through a temporary file: never half written."""
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1)
        os.replace(tmp, path)


def format_row(r: dict, modes, ratios, extra, shape) -> str:
    """One table line: the ``shape`` columns, the method, ms and MiB per mode, the ``ratios``, then the ``extra``
    columns, then the status where it is not "ok"."""

    def num(key, fmt):
        return format(r[key], fmt) if key in r else "-"

    cells = [f"{str(r[key]):>{width}}" for key, _, width in shape] + [f"{r['method']:<20}"]
    cells += [f"{num(f'{m}_ms', '.2f'):>10}" for m in modes]
    cells += [f"{num(f'{m}_peak_mib', '.0f'):>11}" for m in modes]
    for _, key, _, width in ratios:
        cells += [f"{num(f'speedup_vs_{key}_{m}', '.2f'):>{width}}" for m in modes]
    cells += [f"{num(key, fmt):>{width}}" for key, _, width, fmt in extra]
    return " ".join(cells) + ("" if r["status"] == "ok" else f"  {r['status']}")


def table_head(modes, ratios, extra, shape) -> str:
    """The two header lines of the table ``format_row`` writes: the labels and a rule."""
    cells = [f"{label:>{width}}" for _, label, width in shape] + [f"{'method':<20}"]
    cells += [f"{MODES[m] + ' ms':>10}" for m in modes]
    cells += [f"{MODES[m] + ' MiB':>11}" for m in modes]
    for _, _, label, width in ratios:
        cells += [f"{label + '/' + MODES[m]:>{width}}" for m in modes]
    cells += [f"{label:>{width}}" for _, label, width, _ in extra]
    line = " ".join(cells) + "  status"
    return line + "\n" + "-" * len(line)


def plot_times(rows: list[dict], modes, path: str, title: str, xlabel: str = "sequence length L (B·L fixed)") -> None:
    """Time against L, log-log, one line per method; one panel per mode (forward, forward+backward)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.2), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for method in dict.fromkeys(r["method"] for r in rows):
            points = [(r["length"], r[f"{mode}_ms"]) for r in rows if r["method"] == method and f"{mode}_ms" in r]
            if points:
                ax.plot(*zip(*points), "o-", label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median time (ms)")
        ax.set_title(MODES[mode])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_speedups(parts: list[tuple[str, list[dict], str, str]], modes, path: str, title: str) -> None:
    """The speed-up over each part's baseline at every shape (log scale; 1: as fast), one line per method; one panel
    per part and mode. ``parts``: (title, rows, baseline method, key of the ratio: speedup_vs_<key>_<mode>)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(parts), len(modes), figsize=(6.5 * len(modes), 4.2 * len(parts)), squeeze=False)

    def shape(r):
        return (f"{r['elmo']} " if r["part"] == "lstmp" else f"H{r['hidden']} ") + f"B{r['batch']} L{r['length']}"

    for panels, (part_title, rows, baseline, key) in zip(axes, parts):
        labels = list(dict.fromkeys(shape(r) for r in rows))
        for ax, mode in zip(panels, modes):
            for method in dict.fromkeys(r["method"] for r in rows if r["method"] != baseline):
                points = [(labels.index(shape(r)), r[f"speedup_vs_{key}_{mode}"])
                          for r in rows if r["method"] == method and f"speedup_vs_{key}_{mode}" in r]
                if points:
                    ax.plot(*zip(*points), "o-", label=method)
            ax.axhline(1.0, color="grey", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(labels)), labels, rotation=70, fontsize=6)
            ax.set_ylabel(f"speed-up: {baseline} ms / method ms")
            ax.set_title(f"{part_title}, {MODES[mode]}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no method timed besides the baseline", ha="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
