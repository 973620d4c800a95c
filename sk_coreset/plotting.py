"""Accuracy-versus-fraction curves and summary tables of :class:`CoresetCV` results.

Needs matplotlib and pandas (the ``plot`` extra); imported lazily by ``CoresetCV.plot``
and the command line so that the core package does not depend on them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_fraction_curves", "summary_table"]


def _frame(results) -> pd.DataFrame:
    """cv_results_ (dict), a CoresetCV, or a DataFrame -> one row per (selector, fraction)."""
    if hasattr(results, "cv_results_"):
        results = results.cv_results_
    if isinstance(results, pd.DataFrame):
        frame = results
    else:
        frame = pd.DataFrame({k: np.asarray(results[k]) for k in (
            "param_selector", "param_fraction", "mean_test_score", "std_test_score",
            "mean_select_time")})
    frame = frame.copy()
    frame["param_fraction"] = frame["param_fraction"].astype(float)
    frame["param_selector"] = frame["param_selector"].astype(str)
    return frame


_BASELINES = {"randomselector", "uniform", "random"}


def _style(i: int, name: str) -> dict:
    """Distinct color/linestyle/marker per curve; the uniform baseline in thick black."""
    import matplotlib.pyplot as plt

    if name.lower() in _BASELINES:
        return {"color": "black", "linestyle": "-", "marker": "o", "linewidth": 2.2}
    colors = plt.get_cmap("tab10").colors
    return {"color": colors[i % 10], "linestyle": ("-", "--", ":", "-.")[(i // 10) % 4],
            "marker": ("o", "s", "^", "D")[(i // 10) % 4], "linewidth": 1.4}


def plot_fraction_curves(results, ax=None, title: str | None = None, percent: bool = True):
    """Plot mean test score against fraction, one curve per selector with a ±std band.

    The fraction axis is log-scaled and ticked at the evaluated fractions, like Fig. 1
    of the DeepCore paper.

    Parameters
    ----------
    results : dict, DataFrame or fitted CoresetCV
        ``CoresetCV.cv_results_`` or its ``to_frame()``.
    ax : matplotlib Axes or None, default=None
        Where to draw; a new figure when ``None``.
    title : str or None, default=None
        Axes title.
    percent : bool, default=True
        Show scores and fractions in percent.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sk_coreset.plotting import plot_fraction_curves
    >>> res = {"param_selector": ["Uniform"] * 2, "param_fraction": [0.1, 0.5],
    ...        "mean_test_score": [0.8, 0.9], "std_test_score": [0.02, 0.01],
    ...        "mean_select_time": [0.0, 0.0]}
    >>> ax = plot_fraction_curves(res)
    >>> [line.get_label() for line in ax.get_lines()]
    ['Uniform']
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    frame = _frame(results)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    scale = 100.0 if percent else 1.0
    n_curves = frame["param_selector"].nunique()
    band_alpha = 0.15 if n_curves <= 8 else 0.06
    for i, (name, group) in enumerate(frame.groupby("param_selector", sort=False)):
        group = group.sort_values("param_fraction")
        x = group["param_fraction"].to_numpy()
        mean = group["mean_test_score"].to_numpy() * scale
        std = group["std_test_score"].to_numpy() * scale
        style = _style(i, name)
        ax.plot(x, mean, label=name, markersize=4, **style)
        ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=band_alpha,
                        linewidth=0)
    fractions = np.sort(frame["param_fraction"].unique())
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(fractions))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{f * scale:g}" for f in fractions])
    ax.set_xlabel("fraction of the training set" + (" (%)" if percent else ""))
    ax.set_ylabel("test accuracy" + (" (%)" if percent else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              ncol=2 if n_curves > 16 else 1)
    if title:
        ax.set_title(title)
    return ax


def summary_table(results, percent: bool = True) -> pd.DataFrame:
    """One row per selector: "mean ± std" score per fraction, and selection seconds.

    The ``select s`` column is the mean time to select the largest fraction (for a
    nested selector, the one fit that serves every fraction).

    Examples
    --------
    >>> from sk_coreset.plotting import summary_table
    >>> res = {"param_selector": ["Uniform"] * 2, "param_fraction": [0.1, 0.5],
    ...        "mean_test_score": [0.8, 0.9], "std_test_score": [0.02, 0.01],
    ...        "mean_select_time": [0.0, 0.01]}
    >>> summary_table(res).loc["Uniform", "50%"]
    '90.0 ± 1.0'
    """
    frame = _frame(results)
    scale = 100.0 if percent else 1.0
    digits = 1 if percent else 3
    frame["cell"] = [
        f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"
        for m, s in zip(frame["mean_test_score"], frame["std_test_score"])
    ]
    frame["column"] = [f"{f * 100:g}%" if percent else f"{f:g}" for f in frame["param_fraction"]]
    order = [c for _, c in sorted(set(zip(frame["param_fraction"], frame["column"])))]
    table = frame.pivot(index="param_selector", columns="column", values="cell")[order]
    table = table.loc[list(dict.fromkeys(frame["param_selector"]))]
    largest = frame.loc[frame.groupby("param_selector")["param_fraction"].idxmax()]
    table["select s"] = largest.set_index("param_selector")["mean_select_time"].map(
        lambda t: f"{t:.3f}"
    )
    table.index.name = "selector"
    table.columns.name = None
    return table
