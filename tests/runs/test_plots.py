"""``plot``: the PNG figures of a stored run are written and are real images."""
from __future__ import annotations

import os
import warnings

import pytest

pytest.importorskip("zarr")
pytest.importorskip("matplotlib")

from portable_lattice import Ising, Phi4, simulate  # noqa: E402
from portable_lattice.cli import main  # noqa: E402
from portable_lattice.runs.plots import plot_store  # noqa: E402
from portable_lattice.statistics import UnreliableErrorWarning  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _store(path, theory, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreliableErrorWarning)
        simulate(theory, **kwargs, out=str(path), checkpoint_every=64, save_every=50)
    return str(path)


def _check_pngs(paths, names):
    assert [os.path.basename(p) for p in paths] == names
    for p in paths:
        with open(p, "rb") as f:
            head = f.read(8)
        assert head == PNG and os.path.getsize(p) > 10_000, p  # a picture, not an empty canvas


def test_phi4_figures_default_folder(tmp_path):
    path = _store(tmp_path / "phi4", Phi4.from_beta_g(0.5, 0.1), L=8, algorithm="checkerboard", chains=3,
                  therm=20, sweeps=150, seed=1)
    paths = plot_store(path)
    assert all(os.path.dirname(p) == os.path.join(path, "plots") for p in paths)
    _check_pngs(paths, ["history.png", "autocorrelation.png", "histograms.png", "acceptance.png"])


@pytest.mark.parametrize("algorithm", ["swendsen-wang", "wolff"])
def test_spin_figures_and_cli(tmp_path, capsys, algorithm):
    """Cluster samplers have no acceptance: the fraction changed (SW) or the cluster size (Wolff)."""
    path = _store(tmp_path / "ising", Ising(beta=0.44), L=8, algorithm=algorithm, chains=12, therm=10,
                  sweeps=100, seed=2)  # more chains than a history shows
    out = str(tmp_path / "png")
    assert main(["plot", path, "--out", out]) == 0
    paths = capsys.readouterr().out.split()
    _check_pngs(paths, ["history.png", "autocorrelation.png", "histograms.png", "acceptance.png"])
    assert all(p.startswith(out) for p in paths)


def test_plot_refuses_a_directory_that_is_not_a_store(tmp_path):
    with pytest.raises(ValueError, match="not a portable_lattice ensemble"):
        plot_store(str(tmp_path))


def test_missing_matplotlib_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    with pytest.raises(ImportError, match=r"portable_lattice\[plot\]"):
        plot_store(str(tmp_path))
    with pytest.raises(SystemExit) as e:
        main(["plot", str(tmp_path)])
    assert e.value.code == 2 and "pip install 'portable_lattice[plot]'" in capsys.readouterr().err
