"""The capabilities table says what is registered: a native path where it claims one, the generic twin elsewhere."""
import pytest

from portable_lattice._delegation import implementation
from portable_lattice.backends.capabilities import CAPABILITIES, capability


def _generic(*args):
    return "generic"


@pytest.mark.parametrize("path", ["cluster_labels", "cluster_ids", "lookup", "upscale_field"])
def test_table_matches_the_registrations(backend, path):
    if backend.name == "cupy" and path == "cluster_labels":
        pytest.skip("registered only where pylibcugraph is installed")
    present, why = capability(path, backend.name, str(backend.device))
    fn = implementation(path, backend.xp, _generic)
    assert (fn is not _generic) == present, why


def test_every_entry_names_every_backend_and_unknown_paths_are_refused():
    for path, entry in CAPABILITIES.items():
        assert set(entry) == {"numpy", "torch:cpu", "torch:cuda", "cupy", "array_api_strict"}, path
        for value in entry.values():
            assert isinstance(value, str) or (value[0] is None and value[1]), (path, value)
    with pytest.raises(ValueError, match="path='nope'"):
        capability("nope", "numpy")
