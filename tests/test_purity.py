"""Standard 1 and the arrows of docs/architecture.md, checked on the source.

The core never imports numpy, cupy or torch, directly or by a string import
(``importlib.import_module``, ``__import__``). The exceptions are listed by
name: the torch-only model zoo ``nn/``. Host I/O (NumPy files, zarr, HDF5) lives in ``backends/storage/``.
"""
import ast
import pathlib

import portable_lattice

ROOT = pathlib.Path(portable_lattice.__file__).parent
BACKENDS = ROOT.parent / "backends"
FORBIDDEN = {"numpy", "torch", "cupy", "cupyx", "jax", "h5py", "zarr"}
#: modules allowed to touch an array library or a file format, and why
ALLOWED = {
    "nn": "the torch-only model zoo, imported only by the CLI (lazily), studies and benchmarks",
}


def _modules(root):
    for path in sorted(root.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _imports(tree):
    """(module name, line) of every import, including string imports through importlib / __import__."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or ""), node.lineno
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("import_module", "__import__"):
                yield "<string import>", node.lineno


def _allowed(path) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == a or rel.startswith(a + "/") for a in ALLOWED)


def test_core_imports_no_array_library_and_no_string_imports():
    bad = []
    for path, tree in _modules(ROOT):
        for name, line in _imports(tree):
            where = f"{path.relative_to(ROOT)}:{line}: {name}"
            if name == "<string import>" or name.split(".")[0] == "importlib":
                bad.append(where)  # an arrow nobody can see, allowed nowhere
            elif name.split(".")[0] in FORBIDDEN and not _allowed(path):
                bad.append(where)
    assert not bad, bad


def test_backends_have_no_string_imports():
    """The backend layer's arrows are visible too: no importlib or __import__ in backends/."""
    bad = [f"{path.relative_to(BACKENDS)}:{line}" for path, tree in _modules(BACKENDS)
           for name, line in _imports(tree) if name == "<string import>" or name.split(".")[0] == "importlib"]
    assert not bad, bad


def test_the_string_import_detector_works():
    tree = ast.parse("import importlib\nnp = importlib.import_module('numpy')\nt = __import__('torch')\n")
    assert [n for n, _ in _imports(tree)].count("<string import>") == 2


def test_backends_import_only_the_delegation_layer_from_the_core():
    bad = []
    for path, tree in _modules(BACKENDS):
        for name, line in _imports(tree):
            if name.startswith("portable_lattice") and name not in ("portable_lattice._delegation",):
                bad.append(f"{path.name}:{line}: {name}")
    assert not bad, bad


def test_only_runs_and_cli_import_backends_and_only_cli_imports_nn():
    bad = []
    for path, tree in _modules(ROOT):
        rel = path.relative_to(ROOT).as_posix()
        top = rel.split("/")[0]
        for name, line in _imports(tree):
            # absolute, or relative from a sub-package (..backends) or the top level (.backends)
            target = name.lstrip(".").removeprefix("portable_lattice.")
            depth = len(name) - len(name.lstrip("."))
            if rel.count("/") == 0 and depth == 1 or depth == 2 or name.startswith("portable_lattice."):
                first = target.split(".")[0]
            else:
                continue
            # runs/ and the CLI choose backends; surrogates/data.py draws training sets with the driver;
            # nn/ (torch only, above the core) reaches its networks through the torch bridge
            if first == "backends" and top not in ("runs", "cli", "surrogates", "nn"):
                bad.append(f"{rel}:{line}: {name}")
            if first == "nn" and top not in ("cli", "nn"):
                bad.append(f"{rel}:{line}: {name}")
    assert not bad, bad


def test_samplers_never_read_a_coupling():
    """Kernels ask the theory for local quantities; they never read beta and multiply."""
    bad = []
    for path, _ in _modules(ROOT / "samplers"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if ".beta" in code.replace(".beta_", ""):
                bad.append(f"{path.name}:{i}: {line.strip()}")
    assert not bad, bad
