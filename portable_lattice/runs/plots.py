"""Figures of a stored run: Monte Carlo histories, autocorrelation functions, histograms, acceptance.

``portable-lattice plot DIR [--out PNG_DIR]`` calls :func:`plot_store`, which writes

* ``history.png``: the Monte Carlo history of M, |M| and the action per site (phi^4)
  or the energy per site (spin models), one line per chain;
* ``autocorrelation.png``: the normalised autocorrelation function rho(t) of the same
  observables (pooled over the chains), with the window W the Gamma method chose and the
  resulting tau_int;
* ``histograms.png``: histograms of M and of the action (or energy), all chains pooled;
* ``acceptance.png``: the acceptance history and the mean acceptance of each chain
  (Swendsen-Wang: the fraction of spins changed; Wolff: the cluster size over V).

A parameter scan (:func:`runs.scan.scan`) draws its figure with :func:`plot_scan`: the main
observables of every grid point against the scanned parameter (``DIR/scan.png``).

Needs matplotlib (``pip install 'portable_lattice[plot]'``), imported when a figure is
made. The figures are drawn on matplotlib's ``Figure`` objects and written by its Agg
canvas: nothing touches pyplot's global state, so a plot made inside a notebook or a
Dask worker changes no backend.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any

from array_api_compat import array_namespace

from ..statistics import UnreliableErrorWarning, format_value, gamma_method
from .analysis import autocorrelation
from .report import main_observables
from .spec import family_of_card
from .storage import EnsembleStore

__all__ = ["plot_store", "plot_scan", "MAX_CHAINS_SHOWN", "MatplotlibMissing"]

#: histories show at most this many chains (the first ones), so that lines stay distinguishable
MAX_CHAINS_SHOWN = 8

#: axis labels of the stored streams (lattice units: per site, a = 1)
LABELS = {"m": "M = (1/V) sum_x phi_x", "m_abs": "|M|", "action": "S / V  (action per site)",
          "phi2": "<phi^2>  (per site)", "energy": "E / V  (energy per site)",
          "acceptance": "acceptance rate", "changed": "fraction of spins changed",
          "cluster_size": "cluster size / V  (fraction flipped)"}
#: the title of the acceptance figure for each per-step rate a sampler reports
RATE_TITLES = {"acceptance": "Acceptance per chain", "changed": "Fraction of spins changed per chain",
               "cluster_size": "Wolff cluster size per chain"}
SPIN_LABELS = {"m": "M  (magnetisation per site)", "m_abs": "|M|  (magnetisation per site)"}


class MatplotlibMissing(ImportError, ValueError):
    """matplotlib is not installed (an ImportError, and a ValueError so that the command line
    reports it as one line of bad input)."""


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MatplotlibMissing(f"needs matplotlib: pip install 'portable_lattice[plot]' ({e})") from e
    return Figure


def _label(name: str, fam) -> str:
    return (SPIN_LABELS.get(name) if fam.discrete else None) or LABELS.get(name, name)


def _title(card: dict) -> str:
    model = card.get("model", "phi4")
    couplings = ", ".join(f"{k}={card[k]}" for k in ("beta", "g", "kappa", "lam", "J", "h", "q") if k in card)
    return (f"{model} ({couplings}), L={card['L']}, d={card.get('dim', 2)}, {card['algorithm']}, "
            f"{card.get('chains')} chains")


def _time_label(card: dict) -> str:
    every = card.get("every", 1)
    unit = {"hmc": "trajectories", "langevin": "steps", "mala": "steps", "wolff": "cluster flips"}.get(
        card["algorithm"], "sweeps")
    if every == 1:
        unit = unit[:-1]  # "1 sweep", "1 trajectory" below
        unit = "trajectory" if unit == "trajectorie" else unit
    return f"Monte Carlo time (measurements, {every} {unit} apart)"


def plot_store(path: str, out_dir: str | None = None) -> list[str]:
    """Write the PNG figures of the ensemble stored at ``path``.

    Parameters
    ----------
    path : str
        An ensemble directory.
    out_dir : str, optional
        Folder for the PNG files (created if needed); default ``path/plots``.

    Returns
    -------
    list of str
        The paths of the files written.
    """
    Figure = _figure_class()
    store = EnsembleStore.open(path, "r")
    if store.n_meas == 0:
        raise ValueError(f"{path!r} holds no committed measurements yet: nothing to plot")
    card = store.card
    series = store.series()
    fam = family_of_card(card)
    main = [n for n in fam.histories if n in series]
    out_dir = out_dir or os.path.join(path, "plots")
    os.makedirs(out_dir, exist_ok=True)
    title = _title(card)
    written = []

    def save(fig, name):
        target = os.path.join(out_dir, name)
        fig.savefig(target, dpi=110)
        written.append(target)

    save(_histories(Figure, series, main, card, fam, title), "history.png")
    save(_autocorrelations(Figure, series, main, card, fam, title), "autocorrelation.png")
    save(_histograms(Figure, series, [n for n in main if n != "m_abs"], fam, title), "histograms.png")
    rate = next((n for n in ("acceptance", "changed", "cluster_size") if n in series), None)
    if rate is not None:
        save(_acceptance(Figure, series[rate], rate, card, title), "acceptance.png")
    return written


def _histories(Figure, series: dict, names: list, card: dict, fam, title: str):
    chains = next(iter(series.values())).shape[1]
    shown = min(chains, MAX_CHAINS_SHOWN)
    fig = Figure(figsize=(10, 2.6 * len(names) + 0.8), layout="constrained")
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        s = series[name]
        for c in range(shown):
            ax.plot(range(1, s.shape[0] + 1), s[:, c], lw=0.6, alpha=0.8, label=f"chain {c}")
        ax.set_ylabel(_label(name, fam))
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(_time_label(card))
    if shown > 1:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=shown, fontsize="small")
    more = f" (first {shown} of {chains} chains)" if shown < chains else ""
    fig.suptitle(f"Monte Carlo histories{more}\n{title}")
    return fig


def _autocorrelations(Figure, series: dict, names: list, card: dict, fam, title: str):
    fig = Figure(figsize=(10, 2.6 * len(names) + 0.8), layout="constrained")
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names):
        rho, W, tau = autocorrelation(series[name])
        n = series[name].shape[0]
        t_max = int(min(n - 1, max(3 * W, 20)))
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.plot(range(t_max + 1), rho[:t_max + 1], marker=".", ms=3, lw=1, color="C0", label="rho(t)")
        ax.axvline(W, color="C3", ls="--", lw=1.2, label=f"window W = {W}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnreliableErrorWarning)
            g = gamma_method(series[name])
        tau_txt = format_value(g.tau_int, g.tau_int_error) if g.tau_int_error > 0 else f"{tau:.2f}"
        ax.set_title(f"{_label(name, fam)}:  tau_int = {tau_txt} measurements", fontsize="medium")
        ax.set_ylabel("rho(t) = Gamma(t) / Gamma(0)")
        ax.set_xlim(0, t_max)
        ax.legend(loc="upper right", fontsize="small")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("lag t (measurements)")
    fig.suptitle(f"Normalised autocorrelation functions (Gamma method, S = 2)\n{title}")
    return fig


def _histograms(Figure, series: dict, names: list, fam, title: str):
    fig = Figure(figsize=(5 * len(names), 4.2), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0, :]
    for ax, name in zip(axes, names):
        values = series[name].reshape(-1)
        ax.hist(values, bins=_bins(values), density=True, color="C0", alpha=0.8)
        ax.set_xlabel(_label(name, fam))
        ax.set_ylabel("probability density")
        ax.set_title(f"{name}: {values.size} values, all chains", fontsize="medium")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Histograms\n{title}")
    return fig


def _bins(values: Any) -> Any:
    """Histogram bins: one per level for discrete values (spin models: magnetisation and
    energy on a finite lattice take evenly spaced values), otherwise about sqrt(n), at most 60."""
    xp = array_namespace(values)
    levels = xp.unique_values(values)
    if 1 < levels.shape[0] <= 200:
        lo, hi = float(levels[0]), float(levels[-1])
        step = float(xp.min(levels[1:] - levels[:-1]))
        if step > 0 and (hi - lo) / step <= 200:
            k = (levels - lo) / step
            if bool(xp.all(xp.abs(k - xp.round(k)) <= 1e-6)):
                # bin edges half a step around every level (matplotlib takes a list)
                return [lo - step / 2 + i * step for i in range(int(round((hi - lo) / step)) + 2)]
    return min(60, max(10, int(values.size ** 0.5)))


def _acceptance(Figure, acc: Any, name: str, card: dict, title: str):
    n, chains = acc.shape
    shown = min(chains, MAX_CHAINS_SHOWN)
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(2, 1))
    # a running mean over a few measurements keeps per-step 0/1 acceptances readable
    k = max(1, min(50, n // 20))
    for c in range(shown):
        x = acc[:, c]
        smooth = _running_mean(x, k)
        left.plot(range(k, n + 1), smooth, lw=0.7, alpha=0.8, label=f"chain {c}")
    left.set_xlabel(_time_label(card))
    left.set_ylabel(LABELS.get(name, name) + (f"\n(running mean over {k})" if k > 1 else ""))
    left.grid(alpha=0.3)
    if shown > 1:
        handles, labels = left.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=shown, fontsize="small")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)
        total = gamma_method(acc)
    means = acc.mean(axis=0)
    right.bar(range(chains), means, color="C0", alpha=0.8)
    right.axhline(total.value, color="C3", ls="--", lw=1.2, label=f"all chains: {total}")
    right.set_xlabel("chain")
    right.set_ylabel(f"mean {LABELS.get(name, name)}")
    right.set_ylim(0, min(1.05, max(float(means.max()) * 1.25, 0.05)))
    right.legend(loc="lower right", fontsize="small")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{RATE_TITLES[name]}\n{title}")
    return fig


def _running_mean(x: Any, k: int) -> Any:
    c = x.cumsum()
    out = c[k - 1:].copy()
    out[1:] -= c[:-k]
    return out / k


def plot_scan(summary: dict, path: str) -> str | None:
    """The main observables of a scan's summary (:func:`runs.scan.scan`) against the first scanned
    numeric key, one line per value of the others, written to ``path``.

    Returns ``path``, or None where there is nothing to draw (no numeric key with several values,
    no observables, every point failed). Raises :class:`MatplotlibMissing` without matplotlib.
    """
    Figure = _figure_class()
    grid = summary["grid"]
    xkey = next((k for k, v in grid.items() if len(v) > 1 and all(isinstance(x, (int, float)) for x in v)), None)
    pts = [p for p in summary["points"] if p["status"] != "failed"]
    names = main_observables(pts)
    if xkey is None or not names or not pts:
        return None
    others = [k for k in grid if k != xkey]
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(names):]:
        ax.set_visible(False)
    groups: dict[tuple, list] = {}
    for p in pts:
        groups.setdefault(tuple(p["params"][k] for k in others), []).append(p)
    for ax, name in zip(axes, names):
        for label, members in groups.items():
            members = sorted((m for m in members if name in m["observables"]), key=lambda m: m["params"][xkey])
            xs = [m["params"][xkey] for m in members]
            ys = [m["observables"][name]["value"] for m in members]
            es = [m["observables"][name]["error"] for m in members]
            ys = [math.nan if y is None else y for y in ys]
            es = [0.0 if e is None else e for e in es]
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2,
                        label=", ".join(f"{k}={v}" for k, v in zip(others, label)) or None)
        ax.set_xlabel(xkey)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path
