"""Independent reference implementations (explicit loops over sites, plain NumPy)."""
import itertools



def phi4_action_loops(phi, beta, g, constant=True):
    """Eq. 2 of the PEM paper by explicit loops over sites and directions (one chain)."""
    L, d = phi.shape[0], phi.ndim
    s = 0.0
    for x in itertools.product(range(L), repeat=d):
        v = phi[x]
        for mu in range(d):
            y = list(x)
            y[mu] = (y[mu] + 1) % L
            s -= beta * v * phi[tuple(y)]
        s += v * v + g * (v * v - 1) ** 2 if constant else (1 - 2 * g) * v * v + g * v ** 4
    return s
