"""Griffe extension for the API pages.

1. Sub-packages that live outside ``portable_lattice/``. ``pyproject.toml``
   installs some top-level folders as sub-packages
   (``[tool.setuptools.package-dir]``, e.g. ``"portable_lattice.backends" = "backends"``).
   Python's import system follows that mapping; Griffe, which reads the source
   tree without importing it, does not. When Griffe has loaded
   ``portable_lattice``, this extension loads each mapped folder as the
   sub-package it is installed as, so ``::: portable_lattice.backends``
   resolves, relative imports included.
2. Sphinx roles. Docstrings may use ``:func:`~a.b.c```-style roles, which
   Markdown would show verbatim; they are shown as code (``c``) instead.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parents[2]


def mapped_subpackages(package: str) -> dict[str, Path]:
    """``{submodule name: folder}`` for every ``package.NAME = "folder"`` line of package-dir."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        table = tomllib.load(fh).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    out = {}
    for dotted, folder in table.items():
        parent, _, name = dotted.rpartition(".")
        if parent == package and name:
            out[name] = ROOT / folder
    return out


#: :func:`name`, :class:`~pkg.mod.Name`, :py:meth:`...` and the like
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|mod|attr|obj|exc|const):`(~?)([^`]+)`")


def _role_as_code(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _strip_roles(obj: griffe.Object) -> None:
    """Rewrite the Sphinx roles of ``obj``'s docstring and of all its members' (aliases skipped)."""
    if obj.docstring is not None:
        obj.docstring.value = _ROLE.sub(_role_as_code, obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _strip_roles(member)


class PackageDir(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for name, folder in mapped_subpackages(pkg.name).items():
            init = folder / "__init__.py"
            if name in pkg.members or not init.exists():
                continue
            # the parent is set while visiting, so relative imports resolve to portable_lattice.NAME.*
            sub = loader._load_module(name, init, submodules=True, parent=pkg)
            pkg.set_member(name, sub)
        _strip_roles(pkg)
