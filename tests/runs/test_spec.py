"""One run specification: every entry point (keywords, card, command line, scan point, resume)
reads the same table and gives the same error for the same bad value, before any work."""
import os
import warnings

import pytest

from portable_lattice import Ising, Phi4, simulate
from portable_lattice.cli import main
from portable_lattice.runs import spec as S
from portable_lattice.runs.spec import RunSpec

pytest.importorskip("zarr")

BASE = {"model": "phi4", "beta": 0.5, "g": 0.1, "L": 4, "chains": 2, "therm": 2, "sweeps": 6,
        "checkpoint_every": 3, "algorithm": "checkerboard"}


def _toml(card: dict) -> str:
    def v(x):
        return ("true" if x else "false") if isinstance(x, bool) else (f'"{x}"' if isinstance(x, str) else repr(x))
    return "".join(f"{k} = {v(x)}\n" for k, x in card.items())


def _write(tmp_path, card, name="card.toml"):
    path = tmp_path / name
    path.write_text(_toml(card))
    return str(path)


# --- the one table ------------------------------------------------------------------------------
def test_defaults_and_keys_defined_once():
    from portable_lattice.cli import build_parser
    from portable_lattice.runs import cards, scan as distributed
    assert "fused" in cards.CARD_KEYS and "fused" in cards.PHYSICS_KEYS
    assert not hasattr(distributed, "DEFAULTS")
    args = build_parser().parse_args(["simulate"])
    # a flag left out is absent from the card, so RunSpec's default applies
    assert all(getattr(args, k, None) is None for k in S.RUN_KEYS)
    assert RunSpec(Phi4.from_beta_g(0.5, 0.1)).L == RunSpec.L
    import inspect
    sig = inspect.signature(simulate).parameters
    for key in ("L", "dim", "dtype", "chains", "therm", "sweeps", "every", "seed", "stream", "save_every",
                "checkpoint_every"):
        assert sig[key].default == getattr(RunSpec, key), key


def test_knob_table_reaches_every_entry_point():
    """A knob of the table is a keyword, a card key, a flag and a --set key."""
    from portable_lattice.cli import build_parser
    from portable_lattice.runs.scan import parse_sets
    sim = build_parser()._subparsers._group_actions[0].choices["simulate"]
    flags = {a.dest for a in sim._actions}
    for knob in S.KNOB_TYPES:
        assert knob in S.CARD_KEYS and knob in flags
        parse_sets([f"{knob}={'true' if S.KNOB_TYPES[knob] is bool else 'leapfrog' if knob == 'integrator' else 2}"])


# --- fused survives a card, a scan point and a resume ------------------------------------------
def test_fused_in_a_card(tmp_path, capsys):
    pytest.importorskip("numba")
    card = dict(BASE, fused=True, stream="philox")
    assert RunSpec.from_card(card).prepare().kernel.fused is True
    out = tmp_path / "ens"
    assert main(["run", _write(tmp_path, card), "--out", str(out), "--json", "--no-progress"]) == 0
    from portable_lattice.runs.storage import EnsembleStore
    assert EnsembleStore.open(str(out)).card["fused"] is True


def test_fused_in_a_scan_point(tmp_path):
    pytest.importorskip("numba")
    from portable_lattice.runs.scan import parse_sets, scan
    from portable_lattice.runs.storage import EnsembleStore
    grid = parse_sets(["fused=true,false"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scan(dict(BASE, stream="philox"), grid, out=str(tmp_path / "scan"))
    cards = {}
    for name in os.listdir(tmp_path / "scan"):
        if os.path.isdir(tmp_path / "scan" / name):
            c = EnsembleStore.open(str(tmp_path / "scan" / name)).card
            cards[c["fused"]] = c
    assert set(cards) == {True, False}


def test_fused_in_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("numba")
    from portable_lattice.runs.production import resume
    out = str(tmp_path / "ens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulate(Phi4.from_beta_g(0.5, 0.1), L=4, chains=2, therm=2, sweeps=3, checkpoint_every=3, out=out,
                 stream="philox", fused=True, progress=False)
        kernels = []
        prepare = RunSpec.prepare

        def spy(self, start=None):
            prep = prepare(self, start)
            kernels.append(prep.kernel)
            return prep
        monkeypatch.setattr(RunSpec, "prepare", spy)
        res = resume(out, sweeps=6, progress=False)
    assert kernels and kernels[0].fused is True and res.meta["knobs"]["fused"] is True


# --- one validation for five entry points --------------------------------------------------------
#: (key, bad value): each of the right type for a card, so the value check speaks
BAD = [("chains", 0), ("L", -3), ("therm", -1), ("sweeps", 0), ("every", 0), ("dim", 5), ("dtype", "float16"),
       ("stream", "mt19937"), ("save_every", -3), ("checkpoint_every", 0), ("hits", 0), ("step", -1.0),
       ("algorithm", "wolff"), ("g", -0.5), ("backend", "jax")]


def _message(key, value) -> str:
    card = dict(BASE, **{key: value})
    with pytest.raises((ValueError, TypeError)) as e:
        RunSpec.from_card(card)
    return str(e.value)


@pytest.mark.parametrize("key,value", BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_same_error_on_every_path(key, value, tmp_path, capsys):
    message = _message(key, value)
    assert key in message or repr(value) in message, message
    card = dict(BASE, **{key: value})
    beta, g = card.pop("beta"), card.pop("g")
    card.pop("model")
    # 1. keyword arguments (the theory's own constructor checks its couplings)
    with pytest.raises((ValueError, TypeError)) as e:
        simulate(Phi4.from_beta_g(beta, g), **card)
    assert str(e.value) == message
    # 2. a run card
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as e:
        main(["run", _write(tmp_path, dict(BASE, **{key: value})), "--out", str(out)])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()
    # 3. the command line
    argv = ["simulate", "--out", str(out)]
    for k, v in dict(BASE, **{key: value}).items():
        argv += [f"--{k.replace('_', '-')}" if len(k) > 1 or k == "g" else f"--{k}", str(v)]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    if key not in ("dtype", "stream", "algorithm", "backend"):  # argparse's choices speak first
        assert message in err, err
    assert not out.exists()
    # 4. a scan point
    from portable_lattice.runs.scan import scan
    with pytest.raises((ValueError, TypeError)) as e:
        scan(dict(BASE), {key: [value]}, out=str(tmp_path / "scan"))
    assert message in str(e.value)
    assert not (tmp_path / "scan").exists()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("resume") / "ens")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simulate(Phi4.from_beta_g(0.5, 0.1), L=4, chains=2, therm=2, sweeps=3, checkpoint_every=3, out=out,
                 progress=False)
    return out


@pytest.mark.parametrize("key,value", BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_same_error_on_resume(key, value, stored, capsys):
    """5. resume: a card given to resume, and the run-length flags; a refused value never reaches
    the stored card (a later plain resume still works)."""
    from portable_lattice.runs.production import resume
    from portable_lattice.runs.storage import EnsembleStore
    message = _message(key, value)
    before = EnsembleStore.open(stored).card
    stored_card = {k: v for k, v in before.items() if k not in ("device",)}
    with pytest.raises((ValueError, TypeError)) as e:
        resume(stored, card=dict(stored_card, **{key: value}), progress=False)
    # a physics key may be refused as changed before its value is judged; the value's own
    # message comes first wherever the key may change
    assert message in str(e.value) or "resume refuses a changed" in str(e.value)
    if key in ("sweeps", "save_every", "checkpoint_every"):
        with pytest.raises(SystemExit) as e:
            main(["resume", stored, f"--{key.replace('_', '-')}", str(value)])
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert EnsembleStore.open(stored).card == before


def test_spin_theory_card_and_keywords_agree():
    spec = RunSpec.from_card({"model": "ising", "beta": 0.4, "L": 8, "algorithm": "wolff"})
    assert spec.theory == Ising(beta=0.4, dim=2) and spec.knobs == {} and spec.family == "spins"
    assert RunSpec(Ising(beta=0.4, dim=2), L=8, algorithm="wolff") == spec
