"""Standard 1: the core never imports a backend (the torch-only nn/ zoo excepted)."""
import ast
import pathlib

import portable_lattice

FORBIDDEN = {"numpy", "torch", "cupy", "cupyx", "jax"}


def test_core_imports_no_backend():
    root = pathlib.Path(portable_lattice.__file__).parent
    bad = []
    for path in root.rglob("*.py"):
        if "nn" in path.relative_to(root).parts or "backends" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not bad, bad
