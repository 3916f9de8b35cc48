"""Production runs: an ensemble on disk, committed in blocks, continued bit for bit.

The loop is the in-memory driver's (thermalise, then measure every ``every``
steps), with three additions:

* every ``checkpoint_every`` measurements the block's measurements (and every
  ``save_every``-th configuration) are appended to the store and **committed**
  with a checkpoint: the sampler state and the generator state;
* SIGINT / SIGTERM, or a file ``DIR/STOP``, end the run at the next commit
  (exit status 130 / 143 / 0 from the CLI); a second SIGINT stops at once,
  and the last commit stands;
* :func:`resume` continues from the last commit. The chain depends only on the
  state and the generator, never on where the commits fell, so a run killed at
  any moment and resumed, as often as you like, ends with the same bytes as
  the run made in one go.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import fields as dataclass_fields
from typing import Any

from .._checks import nonnegative_int, positive_int
from .cards import PHYSICS_KEYS, PLACEMENT_KEYS, RUN_LENGTH_KEYS, card_from_theory, check_card, physics_hash
from .driver import RunResult, StopRequested, run
from .spec import RUN_KEYS, PreparedRun, RunSpec, device_spec, state_type
from .storage import EnsembleStore

__all__ = ["run_to_store", "resume", "card_of", "StopRequested", "StoreSink"]

STOP_FILE = "STOP"


class _Signals:
    """SIGINT/SIGTERM set a flag read at the next commit; a second SIGINT raises at once."""

    def __init__(self):
        self.status = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers belong to the main thread (a Dask worker thread has none)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.status is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, the last commit stands
        self.status = 128 + signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def card_of(prep: PreparedRun, save_every: int, checkpoint_every: int) -> dict:
    """The resolved run card of a prepared run (what the store records)."""
    return dict(prep.card(), save_every=save_every, checkpoint_every=checkpoint_every)


def _versions() -> dict:
    from .. import __version__
    out = {"portable_lattice": __version__, "python": sys.version.split()[0]}
    for mod in ("numpy", "scipy", "zarr", "h5py", "array_api_compat", "torch", "cupy"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def _state_to_host(state, be) -> dict:
    return {f.name: (None if getattr(state, f.name) is None else be.to_numpy(getattr(state, f.name)))
            for f in dataclass_fields(state)}


def _state_from_host(arrays: dict, be, cls: type):
    return cls(**{k: (None if v is None else be.from_numpy(v)) for k, v in arrays.items()})


class StoreSink:
    """The sink of a run on disk: each block of measurements (and every ``save_every``-th
    configuration) is appended to the store and committed with a checkpoint (the sampler
    state, the generator state, the counters); a signal or a STOP file ends the run at the
    next commit."""

    def __init__(self, store: EnsembleStore, backend: Any, checkpoint_every: int):
        self.store, self.be = store, backend
        self.block = positive_int("checkpoint_every", checkpoint_every)
        self.stop_file = os.path.join(store.path, STOP_FILE)
        self.signals = _Signals()

    def __enter__(self):
        self.signals.__enter__()
        return self

    def __exit__(self, *exc):
        return self.signals.__exit__(*exc)

    def commit(self, state, rng, counters, finished: bool) -> None:
        be = self.be
        self.store.commit({"n_meas": counters["n_meas"], "n_saved": counters["n_saved"], "steps": counters["steps"],
                           "therm_done": counters["therm_done"], "finished": finished, "backend": be.name,
                           "device": device_spec(be)},
                          {"state": _state_to_host(state, be), "rng": rng.get_state(), "counters": dict(counters)})

    def thermalised(self, state, rng, counters) -> None:
        self.commit(state, rng, counters, finished=False)

    def write(self, rows: dict, saved, saved_at: list, state, rng, counters, finished: bool) -> int | None:
        self.store.append(rows, saved, saved_at)
        self.commit(state, rng, counters, finished)
        reason = self.signals.status or (0 if os.path.exists(self.stop_file) else None)
        if reason == 0 and not finished:
            os.remove(self.stop_file)
        return reason

    def keep(self, rows: dict) -> None:
        """Rows of an uncommitted block are not kept: the committed measurements stand."""

    def series(self) -> dict:
        return self.store.series()

    def where(self) -> dict:
        return {"out": self.store.path}


def _continue(prep: PreparedRun, store: EnsembleStore, state, counters: dict, *, save_every: int,
              checkpoint_every: int, progress: bool | None) -> RunResult:
    """The one loop (:func:`runs.driver.run`) from ``state`` and ``counters``, into ``store``."""
    with prep.compiled():
        result = run(prep.kernel, state, prep.rng, n_therm=prep.therm, n_measure=prep.sweeps, every=prep.every,
                     measure=prep.measure, analyse=prep.analyse, to_host=prep.backend.to_numpy, progress=progress,
                     label=f"{prep.algorithm} [{prep.backend}]", sink=StoreSink(store, prep.backend, checkpoint_every),
                     counters=counters, save_every=save_every)
    result.meta = dict(prep.meta, **result.meta)
    return result


def run_to_store(prep: PreparedRun, out: str, *, save_every: int = 0, checkpoint_every: int = 100,
                 progress: bool | None = None) -> RunResult:
    """Run a prepared run into a new store at ``out`` (refused if ``out`` holds anything)."""
    nonnegative_int("save_every", save_every)
    positive_int("checkpoint_every", checkpoint_every)
    card = card_of(prep, save_every, checkpoint_every)
    couplings = getattr(prep.theory, "couplings", None)
    config_shape = tuple(prep.start.shape)  # the family's own layout ((chains, n, L, ..., L) for vectors)
    config_dtype = prep.theory.family.config_dtype(prep.meta["dtype"])
    store = EnsembleStore.create(out, card, physics_hash(card), _versions(), config_shape, config_dtype,
                                 None if couplings is None else prep.backend.to_numpy(couplings),
                                 format=prep.spec.format if prep.spec is not None else "zarr")
    with store:  # the writer lock, held to the end of the run
        state = prep.kernel.init(prep.start)
        counters = {"n_meas": 0, "n_saved": 0, "steps": 0, "therm_done": False}
        # commit 0: the start, so that a run killed during thermalisation restarts from it
        StoreSink(store, prep.backend, checkpoint_every).commit(state, prep.rng, counters, finished=False)
        return _continue(prep, store, state, counters, save_every=save_every, checkpoint_every=checkpoint_every,
                         progress=progress)


def _resolve_card(card: dict, couplings: Any = None) -> dict:
    """A card as the store would record it: the keys it leaves out take simulate's defaults, the
    theory's and the algorithm's included (so the card that made a run agrees with its store).
    Edwards-Anderson couplings are the store's (compared by the store, not by the card)."""
    spec = RunSpec.from_card(check_card(card), couplings=couplings)
    out = {k: getattr(spec, k) for k in RUN_KEYS if k in PHYSICS_KEYS}
    out.update({k: v for k, v in card.items() if k not in ("couplings", "couplings_seed")})
    out.update(card_from_theory(spec.theory), algorithm=spec.algorithm, **spec.knobs)
    return out


def resume(path: str, *, sweeps: int | None = None, save_every: int | None = None,
           checkpoint_every: int | None = None, backend: str | None = None, device: str | None = None,
           allow_backend_change: bool = False, progress: bool | None = None, card: dict | None = None) -> RunResult:
    """Continue the run stored at ``path`` from its last commit, appending to the same store.

    Only the run length and output cadence may change (``sweeps``, ``save_every``,
    ``checkpoint_every``); a different card (``card``, e.g. from a run card file) must
    agree on every physics key. A change of backend or device is refused unless
    ``allow_backend_change``: the chain then continues from the stored state with a
    fresh generator, statistically equal but not bit-identical.
    """
    with EnsembleStore.open(path, "r+") as store:  # the writer lock: a second writer is refused here
        return _resume(store, path, sweeps, save_every, checkpoint_every, backend, device, allow_backend_change,
                       progress, card)


def _resume(store, path, sweeps, save_every, checkpoint_every, backend, device, allow_backend_change, progress,
            card) -> RunResult:
    store.verify()  # nothing is appended to a store with a missing or damaged piece
    overrides = {"sweeps": sweeps, "save_every": save_every, "checkpoint_every": checkpoint_every,
                 "backend": backend, "device": device}
    new, be, moved = _resumed_card(store, path, card, overrides, allow_backend_change)
    couplings = store.couplings()
    # validated as a whole before the store is touched: a bad value never reaches the stored card
    spec = RunSpec.from_card(dict({k: v for k, v in new.items() if k not in PLACEMENT_KEYS}, format=store.format),
                             backend=be,
                             couplings=None if couplings is None else be.from_numpy(couplings))
    if spec.sweeps < store.n_meas:
        raise ValueError(f"sweeps must be at least the {store.n_meas} measurements already stored, got "
                         f"sweeps={spec.sweeps}")
    prep = spec.replace(backend=be).prepare()
    cp = store.checkpoint()
    state = _state_from_host(cp["state"], be, state_type(prep.theory))
    if moved:
        state = prep.kernel.init(state.config)  # caches rebuilt on the new device
        import hashlib
        digest = hashlib.sha256(f"{new['seed']}:{store.commit_record.get('number')}".encode()).digest()
        prep.rng = be.rng(int.from_bytes(digest[:7], "little"))
        print(f"portable-lattice: warning: continuing on {be} with a fresh generator: statistically equal "
              "to the stored run, not bit-identical", file=sys.stderr)
    else:
        prep.rng.set_state(cp["rng"])
    if new != store.card:
        store.set_card(new)
    counters = {k: cp["counters"][k] for k in ("n_meas", "n_saved", "steps", "therm_done")}
    return _continue(prep, store, state, counters, save_every=spec.save_every,
                     checkpoint_every=spec.checkpoint_every, progress=progress)


def _resumed_card(store: EnsembleStore, path: str, card: dict | None, overrides: dict,
                  allow_backend_change: bool) -> tuple[dict, Any, list]:
    """The card a resumed run continues with: the stored one, with the run length, cadence and
    placement a ``card`` or the ``overrides`` change (any physics change refused by key), the
    backend it runs on, and the placement keys that moved (refused unless ``allow_backend_change``)."""
    stored = store.card
    # where the checkpoint's generator state comes from: the commit record says (the card's backend
    # may name a move whose first commit never came)
    placed = {k: store.commit_record.get(k, stored.get(k)) for k in PLACEMENT_KEYS}
    new = dict(stored, **placed)
    if card is not None:
        if card.get("format", store.format) != store.format:
            raise ValueError(f"resume refuses a changed format: the store at {path!r} is {store.format!r}, "
                             f"the card says format = {card['format']!r}")
        given = _resolve_card(card, store.couplings())
        for key in sorted(set(stored) | set(given)):
            if key in PHYSICS_KEYS and key not in ("couplings", "couplings_seed") \
                    and stored.get(key) != given.get(key):
                raise ValueError(f"resume refuses a changed {key}: stored {key} = {stored.get(key)!r}, "
                                 f"new {key} = {given.get(key)!r} (only {', '.join(RUN_LENGTH_KEYS)} may change)")
        new.update({k: card[k] for k in card if k in RUN_LENGTH_KEYS + PLACEMENT_KEYS})
    new.update({k: v for k, v in overrides.items() if v is not None})
    from ..backends import get_backend
    be = get_backend(new["backend"], None if new.get("device") in (None, "cpu", "CPU_DEVICE") else new["device"])
    # compared as resolved ("cuda" is "cuda:0"), in the form the card stores
    new.update(backend=be.name, device=device_spec(be))
    moved = [k for k in PLACEMENT_KEYS if str(new[k]) != str(placed[k])]
    if moved and not allow_backend_change:
        k = moved[0]
        raise ValueError(f"resume refuses a changed {k}: stored {k} = {placed[k]!r}, new {k} = {new[k]!r}; "
                         f"pass --allow-backend-change to continue there (statistically equal, not bit-identical)")
    return new, be, moved
