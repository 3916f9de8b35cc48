"""Every model loader names the file and the fault: missing, empty, not a torch file, another kind
of model; from the API and from each command that reads a model file (exit 2, no traceback)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from portable_lattice.nn.autoregressive import load_model  # noqa: E402
from portable_lattice.nn.diffusion import load_score_model  # noqa: E402
from portable_lattice.nn.ednn import load_ednn  # noqa: E402
from portable_lattice.nn.train import load_ensemble  # noqa: E402


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
    (tmp_path / "model.json").write_text('{"k": 3}')
    torch.save({"format": "something else", "x": torch.zeros(2)}, tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    return {"missing": (str(tmp_path / "nope.pt"), "does not exist"),
            "empty": (str(tmp_path / "empty.pt"), "is empty"),
            "junk": (str(tmp_path / "junk.pt"), "not a torch file"),
            "json": (str(tmp_path / "model.json"), "not a torch file"),
            "other": (str(tmp_path / "other.pt"), "is not a"),
            "list": (str(tmp_path / "list.pt"), "is not a"),
            "folder": (str(tmp_path), "is a folder")}


@pytest.mark.parametrize("loader", [load_model, load_score_model, load_ednn, load_ensemble])
def test_every_loader_names_the_file_and_the_fault(loader, bad_files):
    for path, words in bad_files.values():
        with pytest.raises(ValueError, match=words) as e:
            loader(path)
        assert path in str(e.value)


@pytest.mark.parametrize("argv", [
    ["dcl", "energy", "--net", "{f}"],
    ["dcl", "curves", "--net", "{f}", "--ednn", "{f}"],
    ["diffusion", "sample", "--net", "{f}"],
    ["pem", "--beta", "0.5", "--g", "0.1", "--load-ensemble", "{f}"],
])
@pytest.mark.parametrize("which", ["missing", "empty", "junk"])
def test_each_command_reading_a_model_exits_2_naming_it(argv, which, bad_files, capsys):
    from portable_lattice.cli import main
    path, words = bad_files[which]
    with pytest.raises(SystemExit) as e:
        main([a.replace("{f}", path) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err, err
    assert path in err and words in err, err  # refused for the file, not for a missing flag
