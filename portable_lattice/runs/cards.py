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
from .spec import (CARD_KEYS, DEFAULT_MODEL, KEY_TYPES, KNOB_TYPES, MODEL_KEYS, card_from_theory, stray_model_keys,
                   theory_from_card)

__all__ = ["CARD_KEYS", "PHYSICS_KEYS", "RUN_LENGTH_KEYS", "read_card", "theory_from_card", "card_from_theory",
           "knobs_from_card", "physics_hash", "check_card", "CardError"]

#: what a continuation may change: run length and output cadence (and, on request, where it runs)
RUN_LENGTH_KEYS = ("sweeps", "save_every", "checkpoint_every", "compile")
PLACEMENT_KEYS = ("backend", "device")
#: how the run is stored: chosen when the store is made, recognised when it is opened
STORAGE_KEYS = ("format",)
#: what defines the physics and the chain: a resume refuses to change any of them
PHYSICS_KEYS = tuple(k for k in CARD_KEYS if k not in RUN_LENGTH_KEYS + PLACEMENT_KEYS + STORAGE_KEYS)


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
        want = KEY_TYPES[key]
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise CardError(f"{where(key)}: {key} must be {want.__name__}, got {key} = {value!r}")
    model = card.get("model", DEFAULT_MODEL)
    if model not in MODEL_KEYS:
        raise CardError(f"{where('model')}: model must be one of {sorted(MODEL_KEYS)}, got model = {model!r}")
    stray = stray_model_keys(card, model)
    if stray:
        raise CardError(f"{where(stray[0])}: {stray[0]} does not apply to model = {model!r} "
                        f"(it takes {', '.join(MODEL_KEYS[model])})")
    return dict(card)


def knobs_from_card(card: dict) -> dict:
    return {k: card[k] for k in KNOB_TYPES if k in card}


def physics_hash(card: dict) -> str:
    """sha256 of the physics keys (couplings, algorithm and knobs, lattice, chains, seed, dtype)."""
    phys = {k: card[k] for k in sorted(card) if k in PHYSICS_KEYS}
    for k, v in phys.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{k} must be finite, got {k} = {v!r}")
    return hashlib.sha256(json.dumps(phys, sort_keys=True).encode()).hexdigest()
