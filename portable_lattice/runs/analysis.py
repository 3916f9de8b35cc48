"""Analysis of a stored run, redone from its measurement streams without rerunning anything.

``portable-lattice analyse DIR [--json] [--discard N]`` calls :func:`analyse_store`
and :func:`print_analysis`. The analysis is the one :func:`~portable_lattice.runs.simulate.simulate`
applies at the end of a run (:func:`~portable_lattice.observables.ensemble_phi4` for phi^4,
:func:`~portable_lattice.observables.ensemble_spins` for spin models, Wolff's Gamma method
on the sampler's per-step series), so on the whole stream it reproduces the numbers the run
printed, bit for bit. ``discard`` drops measurements from the start (more thermalisation,
decided after looking at the histories of ``portable-lattice plot``).

Host-side: the streams are read from zarr as host NumPy arrays.
"""
from __future__ import annotations

import operator
import sys
import warnings
from typing import Any

from .._json import json_ready
from ..samplers.base import INFO_SERIES as SAMPLER_SERIES
from ..statistics import Estimate, autocorrelation, format_value
from .cards import theory_from_card
from .driver import FrozenChainWarning
from .spec import KNOB_TYPES, RunSpec, analyse_ensemble, family_of_card
from .storage import EnsembleStore

__all__ = ["analyse_store", "analyse_series", "print_analysis", "autocorrelation", "check_discard",
           "SAMPLER_SERIES"]



def check_discard(discard: Any, n_meas: int) -> int:
    """``discard`` as an int in [0, n_meas), or a ValueError naming --discard."""
    try:
        if isinstance(discard, bool):
            raise TypeError
        discard = operator.index(discard)  # numpy integers are ints
    except TypeError:
        raise ValueError(f"--discard must be a whole number of measurements, got --discard {discard!r}") from None
    if discard < 0:
        raise ValueError(f"--discard must be non-negative, got --discard {discard}")
    if discard >= n_meas:
        raise ValueError(f"--discard must be less than the {n_meas} stored measurements, got --discard {discard}")
    return int(discard)


def analyse_series(series: dict, card: dict, couplings: Any = None) -> dict[str, Estimate]:
    """name -> Estimate for the streams ``series`` (name -> (n, chains)) of a run with ``card``:
    the ensemble quantities of the card's theory and the Gamma method on the sampler series."""
    theory = theory_from_card(card, couplings=couplings)
    out = analyse_ensemble(series, theory, card["L"], card.get("dim", RunSpec.dim))
    acc = series.get("acceptance")
    if acc is not None and not bool((acc > 0).any()):
        # the driver's rule: a chain that never moved has no honest error
        warnings.warn("no proposal was accepted in the analysed measurements (acceptance 0): the errors are "
                      "reported as NaN", FrozenChainWarning, stacklevel=2)
        out = {k: Estimate(e.value, float("nan"), e.tau_int, e.tau_int_error, e.n, e.rhat, e.replicas)
               for k, e in out.items()}
    return out


def _finite(x: float):
    return json_ready(x) if isinstance(x, (int, float)) else None


def _estimate_json(e: Estimate) -> dict:
    return {"value": _finite(e.value), "error": _finite(e.error), "tau_int": _finite(e.tau_int),
            "tau_int_error": _finite(e.tau_int_error), "rhat": _finite(e.rhat), "n": int(e.n)}


def _ordered(names, fam) -> list[str]:
    """The family's reported observables in their order, then the others (as ``simulate`` prints them)."""
    first = [n for n in fam.reported if n in names]
    return first + sorted(n for n in names if n not in first)


def analyse_store(path: str, discard: int = 0) -> dict:
    """Redo the analysis of the ensemble stored at ``path`` from its committed streams.

    Parameters
    ----------
    path : str
        An ensemble directory (``simulate(..., out=path)``, ``portable-lattice run``).
    discard : int
        Measurements dropped from the start of every chain, 0 <= discard < n_meas.

    Returns
    -------
    dict
        JSON-ready (NaN as None): ``path``, ``card`` (the resolved run card),
        ``physics_hash``, ``versions`` (of the run that wrote it), ``n_meas``,
        ``n_saved``, ``finished``, ``discard``, ``analysed`` (measurements per chain
        used), ``chains``, ``family``, and ``observables`` / ``sampler``: name ->
        {value, error, tau_int, tau_int_error, rhat, n}.

    Raises
    ------
    ValueError
        A bad ``discard`` (the message names --discard), or a store that is not
        an ensemble or is corrupted (:class:`~portable_lattice.runs.storage.StoreError`).
    """
    store = EnsembleStore.open(path, "r")  # the streams only: saved configurations are not read
    n_meas = store.n_meas
    if n_meas == 0:
        raise ValueError(f"{path!r} holds no committed measurements yet (still thermalising?): nothing to analyse")
    discard = check_discard(discard, n_meas)
    card = store.card
    series = {name: s[discard:] for name, s in store.series().items()}
    estimates = analyse_series(series, card, store.couplings())
    fam = family_of_card(card)
    names = _ordered([n for n in estimates if n not in SAMPLER_SERIES], fam)
    chains = next(iter(series.values())).shape[1]
    return {"path": str(path), "card": card, "physics_hash": store.physics_hash,
            "versions": store.versions, "format": store.format,
            "n_meas": n_meas, "n_saved": store.n_saved, "finished": bool(store.commit_record.get("finished", False)),
            "discard": discard, "analysed": n_meas - discard, "chains": int(chains), "family": fam.name,
            "observables": {n: _estimate_json(estimates[n]) for n in names},
            "sampler": {n: _estimate_json(estimates[n]) for n in SAMPLER_SERIES if n in estimates}}


def _cell(d: dict, key: str, err: str | None = None) -> str:
    v = d.get(key)
    if v is None:
        return "nan"
    e = d.get(err) if err else None
    if err and e is not None and e > 0:
        return format_value(v, e)
    return f"{v:.4g}" if key != "tau_int" else f"{v:.2f}"


def print_analysis(out: dict, file=None) -> None:
    """The analysis of :func:`analyse_store` as a table (stdout by default)."""
    f = file or sys.stdout
    c = out["card"]
    model = c.get("model", "phi4")
    couplings = ", ".join(f"{k}={c[k]}" for k in ("beta", "g", "kappa", "lam", "J", "h", "q") if k in c)
    knobs = ", ".join(f"{k}={c[k]}" for k in KNOB_TYPES if k in c)
    f.write(f"{out['path']}: {model} ({couplings}) L={c['L']} d={c.get('dim', 2)} | {c['algorithm']}"
            f"{' (' + knobs + ')' if knobs else ''} | {c.get('backend')} on {c.get('device')}, {c.get('dtype')} | "
            f"seed {c.get('seed')}\n")
    state = "finished" if out["finished"] else f"unfinished: {out['n_meas']} of {c.get('sweeps')}"
    dropped = f" after discarding {out['discard']}" if out["discard"] else ""
    every = c.get("every", 1)
    steps = f"{every} step" + ("s" if every != 1 else "")
    f.write(f"{out['chains']} chains x {out['n_meas']} measurements ({state}), every {steps}; "
            f"{out['n_saved']} configurations saved; analysed {out['analysed']} per chain"
            f"{dropped}\n\n")
    f.write(f"{'observable':14s} {'value':>20s} {'tau_int':>14s} {'R-hat':>7s}\n")
    for group in ("observables", "sampler"):
        for name, d in out[group].items():
            rhat = f"{d['rhat']:.3f}" if d.get("rhat") is not None else "nan"
            value = _cell(d, "value", "error") if d.get("error") is not None else \
                f"{_cell(d, 'value')} +- nan"
            f.write(f"{name:14s} {value:>20s} {_cell(d, 'tau_int', 'tau_int_error'):>14s} {rhat:>7s}\n")
    bad = [n for g in ("observables", "sampler") for n, d in out[g].items()
           if d.get("rhat") is not None and d["rhat"] > 1.1]
    if bad:
        f.write(f"\nR-hat above 1.1 for {', '.join(bad)}: the chains disagree (not thermalised, or stuck); "
                "look at `portable-lattice plot` and consider --discard\n")
