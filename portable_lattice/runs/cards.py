"""Run cards: one flat dictionary (a TOML file) that says what ``simulate`` takes.

A card's keys are the long flag names of ``portable-lattice simulate`` with ``_``
for ``-`` (``model``, ``beta``, ``g``, ``L``, ``algorithm``, ``chains``, ``sweeps``,
``save_every``, ...), so a card and a command line say the same thing. The same
checks apply to both, and each error names the key (and, for a file, its line).
"""
from __future__ import annotations

import hashlib
import json
import math
import tomllib
from typing import Any

from ..theories import Clock, EdwardsAnderson, Ising, Phi4, Potts

__all__ = ["CARD_KEYS", "PHYSICS_KEYS", "RUN_LENGTH_KEYS", "read_card", "theory_from_card", "card_from_theory",
           "knobs_from_card", "physics_hash", "check_card", "CardError"]

#: which couplings each model takes
MODEL_KEYS = {"phi4": ("beta", "g", "kappa", "lam"), "ising": ("beta", "J", "h"), "potts": ("beta", "J", "q"),
              "clock": ("beta", "J", "q"), "ea": ("beta", "couplings", "couplings_seed")}
KNOB_KEYS = ("step", "hits", "dt", "n_steps", "traj_length", "integrator")
RUN_KEYS = ("L", "dim", "algorithm", "backend", "device", "dtype", "chains", "therm", "sweeps", "every", "seed",
            "compile", "save_every", "checkpoint_every", "stream")
#: every key a card may hold
CARD_KEYS = ("model",) + tuple(dict.fromkeys(k for ks in MODEL_KEYS.values() for k in ks)) + KNOB_KEYS + RUN_KEYS
#: what a continuation may change: run length and output cadence (and, on request, where it runs)
RUN_LENGTH_KEYS = ("sweeps", "save_every", "checkpoint_every", "compile")
PLACEMENT_KEYS = ("backend", "device")
#: what defines the physics and the chain: a resume refuses to change any of them
PHYSICS_KEYS = tuple(k for k in CARD_KEYS if k not in RUN_LENGTH_KEYS + PLACEMENT_KEYS)

_TYPES = {"model": str, "algorithm": str, "backend": str, "device": str, "dtype": str, "integrator": str,
          "stream": str,
          "couplings": str, "q": int, "couplings_seed": int, "hits": int, "n_steps": int, "L": int, "dim": int,
          "chains": int, "therm": int, "sweeps": int, "every": int, "seed": int, "save_every": int,
          "checkpoint_every": int, "compile": bool}


class CardError(ValueError):
    """A run card that cannot be used; the message names the key (and the line)."""


def _line_of(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        head = line.split("=", 1)[0].strip()
        # key = value, "key" = value, or a table header [key]
        if head.strip("\"'") == key or (head.startswith("[") and head.strip("[] \"'") == key):
            return i
    return None


def read_card(path: str) -> dict:
    """A TOML run card as a flat dictionary, each key and value checked for its type."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CardError(f"cannot read the run card {path!r}: {e.strerror or e}") from e
    text = raw.decode("utf-8", errors="replace")
    try:
        card = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CardError(f"run card {path!r} is not valid TOML: {e}") from e
    return check_card(card, text=text, source=path)


def check_card(card: dict, *, text: str | None = None, source: str = "card") -> dict:
    """Keys known and values of the right type (the value checks are the flags' own, at build time)."""
    def where(key):
        line = _line_of(text, key) if text else None
        return f"{source}" + (f", line {line}" if line else "")

    for key, value in card.items():
        if isinstance(value, dict):
            raise CardError(f"{where(key)}: a run card is flat (key = value), got a table [{key}]")
        if key not in CARD_KEYS:
            raise CardError(f"{where(key)}: unknown key {key!r}; a card takes {', '.join(CARD_KEYS)}")
        want = _TYPES.get(key, float)
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise CardError(f"{where(key)}: {key} must be {want.__name__}, got {key} = {value!r}")
    model = card.get("model", "phi4")
    if model not in MODEL_KEYS:
        raise CardError(f"{where('model')}: model must be one of {sorted(MODEL_KEYS)}, got model = {model!r}")
    stray = [k for k in card if k in set().union(*map(set, MODEL_KEYS.values())) - set(MODEL_KEYS[model])]
    if stray:
        raise CardError(f"{where(stray[0])}: {stray[0]} does not apply to model = {model!r} "
                        f"(it takes {', '.join(MODEL_KEYS[model])})")
    return dict(card)


def theory_from_card(card: dict, couplings: Any = None, backend: Any = None):
    """The theory a card names. Edwards-Anderson couplings come from ``couplings`` (an array),
    a ``couplings`` file, or ``couplings_seed`` drawn on ``backend``."""
    model = card.get("model", "phi4")
    c = card
    if model == "phi4":
        bg = "beta" in c or "g" in c
        kl = "kappa" in c or "lam" in c
        if bg and kl:
            raise ValueError("give either beta/g or kappa/lam, not both")
        if kl:
            if "kappa" not in c or "lam" not in c:
                raise ValueError("kappa and lam go together")
            return Phi4.from_kappa_lambda(c["kappa"], c["lam"])
        if "beta" not in c or "g" not in c:
            raise ValueError("give the couplings: beta and g, or kappa and lam")
        return Phi4.from_beta_g(c["beta"], c["g"])
    if "beta" not in c:
        raise ValueError(f"model {model} needs beta (the inverse temperature)")
    common = {"J": c["J"]} if "J" in c else {}
    dim = c.get("dim", 2)
    if model == "ising":
        return Ising(beta=c["beta"], h=c.get("h", 0.0), dim=dim, **common)
    if model in ("potts", "clock"):
        return (Potts if model == "potts" else Clock)(beta=c["beta"], q=c.get("q", 3), dim=dim, **common)
    if couplings is not None:
        return EdwardsAnderson(beta=c["beta"], couplings=couplings)
    if ("couplings" in c) == ("couplings_seed" in c):
        raise ValueError("model ea needs exactly one of couplings (a .npy file) or couplings_seed")
    if "couplings" in c:
        from .storage import load_couplings
        return EdwardsAnderson(beta=c["beta"], couplings=load_couplings(c["couplings"]))
    if backend is None:
        from ..backends import get_backend
        backend = get_backend("numpy")
    return EdwardsAnderson.gaussian(c.get("L", 16), dim, c["couplings_seed"], beta=c["beta"], backend=backend)


def card_from_theory(theory: Any) -> dict:
    """The card keys that name ``theory`` (Edwards-Anderson couplings are stored beside the card)."""
    p = dict(theory.params())
    name = p.pop("name")
    if name == "phi4":
        form = p.pop("form")
        return {"model": "phi4", **({"beta": p["beta"], "g": p["g"]} if form == "beta_g"
                                    else {"kappa": p["kappa"], "lam": p["lam"]})}
    if name == "ea":
        return {"model": "ea", "beta": p["beta"]}
    return {"model": name, **p}


def knobs_from_card(card: dict) -> dict:
    return {k: card[k] for k in KNOB_KEYS if k in card}


def physics_hash(card: dict) -> str:
    """sha256 of the physics keys (couplings, algorithm and knobs, lattice, chains, seed, dtype)."""
    phys = {k: card[k] for k in sorted(card) if k in PHYSICS_KEYS}
    for k, v in phys.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{k} must be finite, got {k} = {v!r}")
    return hashlib.sha256(json.dumps(phys, sort_keys=True).encode()).hexdigest()
