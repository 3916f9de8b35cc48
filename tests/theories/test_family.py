"""The family is an object the theory names; its protocol is checked, nothing else asks."""
import subprocess

import pytest

from portable_lattice.backends import get_backend
from portable_lattice.theories import (FAMILIES, FIELD, SPINS, Clock, EdwardsAnderson, FieldTheory, Ising, Phi4,
                                       Potts, SpinTheory, family_of)

THEORIES = [Phi4.from_beta_g(0.5, 0.1), Phi4.from_kappa_lambda(0.2, 0.02), Ising(beta=0.4), Ising(beta=0.3, h=0.1),
            Potts(beta=1.0, q=3), Clock(beta=1.0, q=6),
            EdwardsAnderson.gaussian(4, 2, 0, beta=1.0, backend=get_backend("numpy"))]


@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: type(t).__name__)
def test_every_theory_names_a_family_and_meets_its_protocol(theory):
    fam = family_of(theory)
    assert fam is theory.family and FAMILIES[fam.name] is fam
    assert isinstance(theory, fam.protocol)
    assert fam.discrete == isinstance(theory, SpinTheory) and fam.discrete != (fam is FIELD)
    assert fam.config_dtype("float32") == ("int8" if fam.discrete else "float32")


def test_protocols_are_the_families():
    assert FIELD.protocol is FieldTheory and SPINS.protocol is SpinTheory
    assert set(FIELD.summary) - {"acceptance"} <= set(FIELD.reported)
    assert set(SPINS.summary) - {"acceptance"} <= set(SPINS.reported)


def test_not_a_theory_is_named():
    with pytest.raises(TypeError, match="must be a portable_lattice theory.*got str"):
        family_of("ising")

    class Half:
        family = SPINS
    with pytest.raises(TypeError, match="Half names the spins family but lacks"):
        family_of(Half())


def test_no_family_decided_outside_the_theories():
    """No ``== "phi4"`` on a family and no ``hasattr(theory, "check_spins")``-style test of kind
    outside theories/ (the capability probes of individual rules are named in the rule seam)."""
    out = subprocess.run(["grep", "-rnE", r'hasattr\((self\.)?theory, "(check_spins|local_delta_action|'
                          r'grad_action|state_values|check_field|delta_action)"|fam(ily)? == "(field|spins)"',
                          "portable_lattice", "backends"], capture_output=True, text=True)
    assert out.stdout == "", out.stdout
