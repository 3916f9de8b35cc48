"""Table 2's EDNN with labels averaged over several autoregressive models (the paper averages
over 6), each EDNN an ensemble of 8 (``merge_ednns``): one of the levers tried for the EDNN RMSE
(see README.md, "What we tried for the EDNN RMSE").

    python studies/dcl/label_average.py [--models 6] [--out DIR]

Trains ``--models`` Swendsen-Wang models on 8 x 8 at beta_c with the study's Table-2 settings
(seeds 0, 1, ...), labels 20k random configurations and 20k model samples (split evenly over the
models) with the mean of the first k models' energies (each with its own constant C), and prints
the RMSE of an 8-EDNN ensemble (and of three of its members) on the study's test set for
k = 1, 2, 3 and all. One torch thread; about 20 minutes for 6 models.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as study  # noqa: E402  (the study's settings and model training)

from portable_lattice import Ising  # noqa: E402
from portable_lattice.nn import dcl  # noqa: E402
from portable_lattice.nn.ednn import EDNN, EDNNEnergy, ModelEnergy, merge_ednns, train_ednn  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--out", default=None, help="directory for results.json (default: none written)")
    args = ap.parse_args(argv)
    if args.models < 1:
        raise SystemExit(f"--models must be at least 1, got {args.models}")
    torch.set_num_threads(1)
    S = study.settings(False)
    th = Ising(beta=study.BETA_C)
    spins, energies = dcl.energy_test_set(th, 8, per_level=S["t2_per_level"], seed=3)

    def rmse(net):
        ee = EDNNEnergy(net)
        ee.set_constant("random", 8)
        return dcl.energy_rmse(lambda s: ee.energy(s, np.float64), spins, energies)["rmse"]

    models, out = [], {"model_rmse": [], "label_average": {}}
    for seed in range(args.models):
        t0 = time.perf_counter()
        model, _ = study.train(th, 8, S, configs=S["a1_configs"], epochs=S["a1_epochs"], algorithm="swendsen-wang",
                               seeds=32, period=2, seed=seed)
        me = ModelEnergy(model, study.BETA_C)
        me.set_constant("random", 8)
        r = dcl.energy_rmse(lambda s: me.energy(s, np.float64), spins, energies)["rmse"]
        out["model_rmse"].append(r)
        print(f"model seed {seed}: model-energy RMSE {r:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
        models.append(model)
    gen = torch.Generator().manual_seed(5)
    n = S["ednn_configs"]
    parts = [models[0].values.cpu()[torch.randint(2, (n // 2, 8, 8), generator=gen)]]
    parts += [m.sample((n - n // 2) // len(models), gen)[0] for m in models]
    x = torch.cat(parts)
    labels = []
    with torch.no_grad():
        for m in models:
            e = ModelEnergy(m, study.BETA_C)
            e.set_constant("random", 8, seed=5)
            labels.append(e._energy(x).double() + e.shift)
    labels = torch.stack(labels)
    for k in sorted({1, 2, 3, len(models)} & set(range(1, len(models) + 1))):
        nets = []
        for member in range(8):
            torch.manual_seed(5 + member)
            net = EDNN(2, focus=2, context=1, hidden=(32, 64))
            train_ednn(net, x, labels[:k].mean(0), epochs=S["ednn_epochs"], batch=256, lr=1e-3, seed=5 + member)
            nets.append(net)
        singles = [rmse(net) for net in nets[:3]]
        r = rmse(merge_ednns(nets))
        out["label_average"][k] = {"ensemble_rmse": r, "member_rmse": singles}
        print(f"labels averaged over {k} models: EDNN ensemble-8 RMSE {r:.3f}; members "
              + ", ".join(f"{v:.3f}" for v in singles), flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "label_average.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
