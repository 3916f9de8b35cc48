r"""Monte Carlo renormalisation group for the 2D Ising model (Sec. V of the inverse-RG paper).

Couplings: the 36 spin products of one to four spins that fit in a 3 x 3
plaquette, each summed over all translations and all rotations/reflections
of the square lattice (the D4 images of one shape). Up to translation there
are 1, 12, 48 and 97 shapes of 1, 2, 3 and 4 spins; up to D4 they fall into
1 + 5 + 10 + 20 = 36 classes. The 11 odd ones (1 and 3 spins) change sign under
a global flip, the 25 even ones (2 and 4 spins) do not, so the linearised RG
transformation splits into an odd (y_h) and an even (y_t) block.

With S^(n) the couplings measured on the configuration blocked n times,
Swendsen's chain rule (Eq. 18-22) gives, for the step n -> n+1,

    A = Cov(S^(n+1), S^(n)),  B = Cov(S^(n+1), S^(n+1)),  T = B^{-1} A,

T_{ab} = dK_a^(n+1)/dK_b^(n), and the exponents y = ln(lambda)/ln 2 from its
eigenvalues lambda: the largest odd one gives y_h, the largest even one y_t.
Errors come from a jackknife over blocks of configurations. The small dense
linear algebra runs on the host (NumPy via the backend layer).

``basis="oriented"`` measures instead one fixed orientation of each shape
(the class representative, without the D4 sum), as the inverse-RG authors'
public code does. The truncated T then also carries the operators' non-
symmetric parts: y_h and y_t barely move, but the redundant exponent and the
ordering behind "omega" do (see the README's MCRG section for measured values).
"""
from __future__ import annotations

import itertools
import math
from typing import Any

from array_api_compat import array_namespace

from .._checks import choice
from ..lattice import shift

__all__ = ["COUPLINGS", "ODD", "EVEN", "BASES", "measure_couplings", "t_matrix_exponents", "run_mcrg",
           "analyse_ensemble"]


def _translate_to_origin(shape):
    mx = min(x for x, _ in shape)
    my = min(y for _, y in shape)
    return tuple(sorted((x - mx, y - my) for x, y in shape))


_D4 = [lambda x, y: (x, y), lambda x, y: (-y, x), lambda x, y: (-x, -y), lambda x, y: (y, -x),
       lambda x, y: (-x, y), lambda x, y: (x, -y), lambda x, y: (y, x), lambda x, y: (-y, -x)]


def _build_couplings():
    sites = [(x, y) for x in range(3) for y in range(3)]
    classes: dict[tuple, set] = {}
    for n in range(1, 5):
        for combo in itertools.combinations(sites, n):
            images = {_translate_to_origin([f(*p) for p in combo]) for f in _D4}
            key = min(images)
            classes.setdefault(key, set()).update(images)
    ordered = sorted(classes.items(), key=lambda kv: (len(kv[0]), kv[0]))
    return [(rep, sorted(images)) for rep, images in ordered]


#: (representative shape, list of its distinct images up to translation), 36 entries
COUPLINGS = _build_couplings()
#: indices of the spin-flip odd (1 or 3 spins) and even (2 or 4 spins) couplings
ODD = [i for i, (rep, _) in enumerate(COUPLINGS) if len(rep) % 2 == 1]
EVEN = [i for i, (rep, _) in enumerate(COUPLINGS) if len(rep) % 2 == 0]
#: operator bases: the D4-symmetrised sums, or one orientation (the representative) per class
BASES = ("symmetric", "oriented")


def measure_couplings(s: Any, basis: str = "symmetric") -> Any:
    """S_a per chain for the 36 couplings: array (chains, 36), float64.

    Extensive (summed over the lattice, not divided by V): S_a is the operator
    conjugate to K_a, which is what the chain rule of Eq. 18 differentiates.
    Per-site values would scale T by V_coarse / V_fine = 1/4. ``basis``
    "symmetric" sums each shape over its D4 images; "oriented" takes only
    the class representative (one orientation).
    """
    choice("basis", basis, BASES)
    xp = array_namespace(s)
    if s.ndim != 3:
        raise ValueError(f"MCRG couplings are defined for 2D Ising spins, got shape {tuple(s.shape)}")
    shifted = {}
    for dx in range(3):
        for dy in range(3):
            shifted[(dx, dy)] = shift(shift(s, 0, dx), 1, dy)  # s_{x + (dx, dy)}
    cols = []
    for rep, images in COUPLINGS:
        total = None
        for image in (images if basis == "symmetric" else [rep]):
            prod = shifted[image[0]]
            for p in image[1:]:
                prod = prod * shifted[p]
            term = xp.sum(xp.astype(prod, xp.float64), axis=(1, 2))
            total = term if total is None else total + term
        cols.append(total)
    return xp.stack(cols, axis=1)


def _t_eigenvalues(np, S_fine, S_coarse, sector):
    """Leading eigenvalues of T = B^-1 A within one symmetry sector (host NumPy)."""
    a = S_coarse[:, sector]
    b = S_fine[:, sector]
    a_c = a - a.mean(axis=0)
    b_c = b - b.mean(axis=0)
    A = a_c.T @ b_c / len(a)
    B = a_c.T @ a_c / len(a)
    ev = np.linalg.eigvals(np.linalg.solve(B, A))
    ev = ev[np.argsort(-np.abs(ev))]
    return ev


def t_matrix_exponents(S_fine, S_coarse, n_blocks: int = 20) -> dict:
    """Exponents from coupling measurements at levels n and n+1 (host arrays (configs, 36)).

    Returns {"y_h", "y_t", "redundant", "omega"} each as (value, error), and the
    odd/even eigenvalue lists. y_h and y_t come from the largest odd and even
    eigenvalues. Following Sec. V of the paper, ``redundant`` is the exponent
    of the third eigenvalue overall and ``omega`` that of the sixth (exact
    omega = -1); both are identified by ordering alone, so treat them as
    indicative.
    """
    import importlib
    np = importlib.import_module("numpy")  # host linear algebra on measured 36-vectors
    S_fine, S_coarse = np.asarray(S_fine, dtype=float), np.asarray(S_coarse, dtype=float)
    if S_fine.shape != S_coarse.shape or S_fine.shape[1] != len(COUPLINGS):
        raise ValueError(f"coupling arrays must both be (configs, {len(COUPLINGS)}), "
                         f"got {S_fine.shape} and {S_coarse.shape}")

    def exponents(fine, coarse):
        odd = _t_eigenvalues(np, fine, coarse, ODD)
        even = _t_eigenvalues(np, fine, coarse, EVEN)
        y = lambda ev: math.log(abs(ev)) / math.log(2.0)  # noqa: E731
        # the paper's labelling (Sec. V): y_h, y_t from the leading odd and even eigenvalues;
        # the redundant exponent from the 3rd eigenvalue overall, omega from the 6th
        overall = sorted([abs(e) for e in odd] + [abs(e) for e in even], reverse=True)
        return {"y_h": y(odd[0]), "y_t": y(even[0]), "redundant": y(overall[2]), "omega": y(overall[5])}, odd, even

    full, odd, even = exponents(S_fine, S_coarse)
    n = len(S_fine) // n_blocks * n_blocks
    if n_blocks < 2 or n < n_blocks:
        raise ValueError(f"need at least n_blocks={n_blocks} configurations, got {len(S_fine)}")
    size = n // n_blocks
    jk = []
    for k in range(n_blocks):
        keep = np.r_[0:k * size, (k + 1) * size:n]
        jk.append(exponents(S_fine[keep], S_coarse[keep])[0])
    out = {}
    for name, value in full.items():
        vals = np.array([j[name] for j in jk])
        err = math.sqrt((n_blocks - 1) / n_blocks * np.sum((vals - vals.mean()) ** 2))
        out[name] = (value, err)
    return {"exponents": out, "eigenvalues": {"odd": [float(abs(e)) for e in odd],
                                              "even": [float(abs(e)) for e in even]}}


def analyse_ensemble(spins: Any, *, levels: int = 2, pair: int | None = None, seed: int = 0,
                     n_blocks: int = 20, batch: int = 256, basis: str = "symmetric") -> dict:
    """MCRG on stored configurations: ``spins`` (configs, L, L) of +-1 (any backend)."""
    choice("basis", basis, BASES)
    from ..backends import backend_of
    from .blocking import block_levels
    from .models import Ising, check_spins

    check_spins(spins, Ising(dim=2), name="spins")
    be = backend_of(spins)
    rng = be.rng(seed)
    pair = levels - 1 if pair is None else pair
    L = spins.shape[1]
    if L % (2 ** levels) or L // 2 ** levels < 3:
        raise ValueError(f"L must be divisible by 2**levels with at least 3 sites per side left; "
                         f"got L={L} and levels={levels}")
    xp = be.xp
    chunks = []
    for start in range(0, spins.shape[0], batch):
        s = spins[start:start + batch, ...]
        chunks.append(be.to_numpy(xp.stack([measure_couplings(b, basis) for b in block_levels(s, rng, levels)],
                                           axis=1)))
    import importlib
    np = importlib.import_module("numpy")
    S = np.concatenate(chunks)
    steps = {n: t_matrix_exponents(S[:, n, :], S[:, n + 1, :], n_blocks) for n in range(levels)}
    return _report(L, None, int(S.shape[0]), levels, pair, "stored ensemble", be.name, 0.0, steps, basis)


def _report(L, beta, configs, levels, pair, algorithm, backend, seconds, steps, basis):
    chosen = steps[pair]
    return {"L": L, "beta": beta, "configs": configs, "levels": levels, "pair": [pair, pair + 1], "basis": basis,
            "algorithm": algorithm, "backend": backend, "seconds": seconds,
            "exponents": {k: {"value": v[0], "error": v[1]} for k, v in chosen["exponents"].items()},
            "eigenvalues": chosen["eigenvalues"],
            "steps": {f"{n}->{n + 1}": {k: {"value": v[0], "error": v[1]} for k, v in st["exponents"].items()}
                      for n, st in steps.items()}}


def run_mcrg(*, L: int = 32, beta: float | None = None, algorithm: str = "swendsen-wang", configs: int = 10000,
             chains: int = 64, therm: int = 200, every: int = 1, levels: int = 2, pair: int | None = None,
             backend: Any = "numpy", device: Any = None, seed: int = 0, progress: bool | None = None,
             n_blocks: int = 20, basis: str = "symmetric") -> dict:
    """Generate a 2D Ising ensemble, block it ``levels`` times and run the MCRG analysis.

    ``pair`` selects the blocking step n -> n+1 analysed (default: the last,
    levels-1 -> levels); every step's exponents are returned under "steps".
    """
    from .._checks import positive_int
    from ..backends import get_backend
    from ..driver import run
    from ..exact import K_CRITICAL
    from .blocking import block_levels
    from .models import Ising
    from .simulate import make_spin_kernel

    beta = K_CRITICAL if beta is None else beta
    choice("basis", basis, BASES)
    for name, v in (("L", L), ("configs", configs), ("chains", chains), ("levels", levels), ("every", every)):
        positive_int(name, v)
    if L % (2 ** levels) or L // 2 ** levels < 3:
        raise ValueError(f"L must be divisible by 2**levels with a blocked lattice of at least 3 sites per side; "
                         f"got L={L} and levels={levels}")
    pair = levels - 1 if pair is None else pair
    if not 0 <= pair < levels:
        raise ValueError(f"pair must be in 0..levels-1, got pair={pair}")
    model = Ising()
    kernel = make_spin_kernel(model, beta, algorithm)
    be = get_backend(backend, device)
    rng = be.rng(seed)
    n_measure = -(-configs // chains)

    def measure(s):
        xp = array_namespace(s)
        return {"S": xp.stack([measure_couplings(b, basis) for b in block_levels(s, rng, levels)], axis=1)}

    res = run(kernel, model.random(rng, (chains, L, L), be.xp.float64), rng, n_therm=therm,
              n_measure=n_measure, every=every, measure=measure, analyse=lambda series: {},
              to_host=be.to_numpy, progress=progress, label=f"mcrg {algorithm} [{be}]")
    S = res.series["S"]  # (n_measure, chains, levels + 1, 36), host
    S = S.reshape((-1,) + tuple(S.shape[2:]))
    steps = {n: t_matrix_exponents(S[:, n, :], S[:, n + 1, :], n_blocks) for n in range(levels)}
    return _report(L, beta, int(S.shape[0]), levels, pair, algorithm, be.name, res.seconds, steps, basis)


def load_configurations(path: str) -> Any:
    """Stored Ising configurations as a host int8 array (configs, L, L) of +-1.

    ``path`` is a ``.npy`` file, or a ``.npz`` archive with one array or
    ``archive.npz:key`` naming one. Integer arrays must hold +-1; boolean
    arrays are read as s = 2 b - 1.
    """
    import importlib
    np = importlib.import_module("numpy")  # reading files is host I/O, not core physics
    file, _, key = path.partition(":") if path.count(":") == 1 and not path.endswith(":") else (path, "", "")
    try:
        data = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read --input {path!r}: {e}") from e
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            names = list(data.files)
            if not key and len(names) != 1:
                raise ValueError(f"--input {path!r} holds arrays {names}: name one as {file}:KEY")
            if key and key not in names:
                raise ValueError(f"--input {path!r}: no array {key!r} in the archive (it holds {names})")
            data = data[key or names[0]]
    elif key:
        raise ValueError(f"--input {path!r}: only a .npz archive has named arrays")
    if data.dtype == bool:
        data = 2 * data.astype(np.int8) - 1
    if data.dtype.kind not in "iu":
        raise TypeError(f"--input must hold integer +-1 spins (or booleans), got dtype {data.dtype} in {path!r}")
    if data.ndim != 3 or data.shape[1] != data.shape[2]:
        raise ValueError(f"--input must have shape (configs, L, L), got shape {data.shape} in {path!r}")
    bad = (data != 1) & (data != -1)
    if bad.any():
        raise ValueError(f"--input must hold +-1 spins, found the value {data[bad][0]} in {path!r}")
    return data.astype(np.int8)


def main_mcrg(ap, args) -> int:
    """``portable-lattice mcrg``."""
    from ..analysis import format_value
    from ..cli import print_json
    from ..backends import BackendUnavailableError
    try:
        if args.input:
            spins = load_configurations(args.input)
            from ..backends import get_backend
            be = get_backend(args.backend, args.device)
            out = analyse_ensemble(be.from_numpy(spins), levels=args.levels, pair=args.pair,
                                   seed=args.seed, basis=args.basis)
        else:
            out = run_mcrg(L=args.L, beta=args.beta, algorithm=args.algorithm, configs=args.configs,
                       chains=args.chains, therm=args.therm, every=args.every, levels=args.levels,
                       pair=args.pair, backend=args.backend, device=args.device, seed=args.seed,
                       progress=False if args.json and args.progress is None else args.progress,
                       basis=args.basis)
    except (ValueError, TypeError, BackendUnavailableError) as e:
        ap.exit(2, f"portable-lattice mcrg: error: {e}\n")
    if args.json:
        print_json(out)
        return 0
    beta = "stored" if out["beta"] is None else f"{out['beta']:.6f}"
    print(f"MCRG: 2D Ising L={out['L']} beta={beta} | {out['algorithm']} on {out['backend']} | "
          f"{out['configs']} configurations, {out['seconds']:.1f} s | 36 couplings (11 odd, 25 even), "
          f"{out['basis']} basis\n")
    print(f"{'step':8s} {'y_h':>14s} {'y_t':>12s} {'redundant':>12s} {'omega':>12s}")
    for step, ex in out["steps"].items():
        print(f"{step:8s} " + " ".join(f"{format_value(ex[k]['value'], ex[k]['error']):>12s}"
                                        for k in ("y_h", "y_t", "redundant", "omega")))
    print("\nexact: y_h = 1.875, y_t = 1, omega = -1; eigenvalues (step "
          f"{out['pair'][0]}->{out['pair'][1]}): odd {[round(e, 4) for e in out['eigenvalues']['odd'][:3]]}, "
          f"even {[round(e, 4) for e in out['eigenvalues']['even'][:4]]}")
    return 0
