"""The capabilities table is a view of the delegation registry: it lists what is registered, and the
registered routes are what the core's lookups return."""
import pytest

from portable_lattice import _delegation as d
from portable_lattice.backends.capabilities import CAPABILITIES, capability, markdown, table


def _generic(*args):
    return "generic"


def _key(backend):
    if backend.name == "torch":
        return "torch:cuda" if str(backend.device).startswith("cuda") else "torch:cpu"
    return backend.name


@pytest.mark.parametrize("path", sorted(p for p in CAPABILITIES if not p.startswith("fused_")
                                        and p not in ("torch.compile", "inplace_site_writes")))
def test_implementation_lookups_follow_the_table(backend, path):
    """Where the table names a route, the lookup returns its function; where it gives a reason, the
    lookup returns the generic twin or a route registered for another device of the same library,
    which declines this device's arrays."""
    present, why = capability(path, backend.name, str(backend.device))
    fn = d.implementation(path, backend.xp, _generic)
    ours = [r.fn for r in d.routes("implementation", path) if _key(backend) in r.backends]
    if present:
        assert getattr(fn, "native", None) in ours, why
    else:
        assert fn is _generic or not ours, why


def test_fused_lookups_follow_the_table(backend):
    for r in d.routes("fused"):
        present, _ = capability(d.capability_name("fused", r.name), backend.name, str(backend.device))
        x = backend.xp.zeros((2, 4, 4), dtype=backend.xp.float64, device=backend.device)
        fn = d.fused_kernel(r.name, x)
        if not present:
            assert fn is None, (r.name, backend.name)


def test_every_entry_names_every_backend_and_unknown_paths_are_refused():
    for path, entry in CAPABILITIES.items():
        assert tuple(entry) == d.BACKEND_KEYS, path
        for value in entry.values():
            assert isinstance(value, str) or (value[0] is None and value[1]), (path, value)
    with pytest.raises(ValueError, match="path='nope'"):
        capability("nope", "numpy")
    with pytest.raises(ValueError, match="backend='nope'"):
        capability("lookup", "nope")


def test_the_table_is_derived_from_the_registry():
    """A route registered later appears in the table and the page; a backend with neither a route nor
    a reason is refused by name."""
    snapshot = (list(d._ROUTES), list(d._ABSENT))
    try:
        d.register(d.Route("implementation", "test_only_op", ("numpy",), "a test route", lambda xp: False,
                           _generic))
        with pytest.raises(RuntimeError, match="'test_only_op' on 'torch:cpu'"):
            table()
        for key in d.BACKEND_KEYS[1:-1]:
            d.register_absent("implementation", "test_only_op", key, f"no {key} route")
        assert table()["test_only_op"]["numpy"] == "a test route"
        assert table()["test_only_op"]["cupy"] == (None, "no cupy route")
        assert table()["test_only_op"]["array_api_strict"][0] is None  # the strict backend's "*"
        assert "### `test_only_op` (implementation)" in markdown()
    finally:
        d._ROUTES[:], d._ABSENT[:] = snapshot
        d._INDEX.clear()


def test_routes_are_checked_when_registered():
    with pytest.raises(ValueError, match="backends=\\('gpu',\\)"):
        d.Route("fused", "x", ("gpu",), "doc", lambda x: True, _generic)
    with pytest.raises(ValueError, match="kind='fast'"):
        d.Route("fast", "x", ("numpy",), "doc", lambda x: True, _generic)
    with pytest.raises(ValueError, match="backend='gpu'"):
        d.register_absent("fused", "x", "gpu", "why")


def test_the_docs_page_is_rendered_from_the_registry():
    """The hook replaces the page's marker by the table (what ``mkdocs build`` shows)."""
    import importlib.util
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("hook", root / "docs" / "_hooks" / "capabilities.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = (root / "docs" / "capabilities.md").read_text()
    assert hook.MARKER in page
    out = hook.on_page_markdown(page, None, None, None)
    for path in CAPABILITIES:
        assert f"### `{path}`" in out
