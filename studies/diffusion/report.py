"""Markdown tables from studies/diffusion/output/results.json (pasted into the README).

    python studies/diffusion/report.py [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os

from portable_lattice.statistics import format_value

HERE = os.path.dirname(os.path.abspath(__file__))


def f(e):
    if e is None:
        return "-"
    v, err = e["value"], e["error"]
    if err is None or err != err:
        return f"{v:.4g} (no honest error)"
    return format_value(v, err)


def routes_table(block, title):
    print(f"\n### {title}\n")
    names = ("m", "m_abs", "phi2", "chi", "binder", "action")
    print("| route | acceptance | " + " | ".join(f"z {n}" for n in names) + " | tau_int(abs M) | seconds |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for label, row in block["rows"].items():
        zs = " | ".join("n/a" if row["z"][n] != row["z"][n] else f"{row['z'][n]:+.1f}" for n in names)
        print(f"| {label} | {f(row['acceptance'])} | {zs} | {row['tau_int_m_abs']:.1f} | {row['seconds']:.0f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "output"))
    r = json.load(open(os.path.join(ap.parse_args().out, "results.json")))
    if "routes" in r:
        routes_table(r["routes"], "Routes, exact Gaussian score of the wrong kappa (0.23) on the free field "
                                  "L = 4, kappa = 0.2")
    if "routes_nn" in r:
        routes_table(r["routes_nn"], "Routes, trained lattice network on the free field L = 4, kappa = 0.2")
    if "sym" in r:
        s = r["sym"]
        print("\n### Table 1 (kappa = 0.21, lambda = 0.022, L = %d)\n" % s["L"])
        print("| data set | <M> | chi_2 | U_L | <phi^2> | S/V |")
        print("|---|---|---|---|---|---|")
        for name, row in s["table1"].items():
            print(f"| {name} | {f(row['M'])} | {f(row['chi2'])} | {f(row['U_L'])} | {f(row['phi2'])} | "
                  f"{f(row['action'])} |")
        if "paper_network" in r:
            row = r["paper_network"]["table1_row"]
            print(f"| generated (paper network) | {f(row['M'])} | {f(row['chi2'])} | {f(row['U_L'])} | "
                  f"{f(row['phi2'])} | {f(row['action'])} |")
        print("\nz of the DM samples against the long HMC reference: "
              + ", ".join(f"{k} {v:+.2f}" for k, v in s["z_generated_vs_reference"].items()))
        lik = s["likelihood"]
        print(f"\nR^2 (lattice network): Eq. 4.9 with the log Z offset {f(lik['r2']['eq_4_9'])}, "
              f"Pearson^2 {f(lik['r2']['pearson2'])}; mean probe variance of log q "
              f"{lik['probe_noise_var_of_log_q']:.3g} against var(S) {lik['var_S']:.3g}")
        print(f"DM-MC at kappa = 0.21 (route 2): acceptance {f(s['dm_mc']['acceptance'])}")
        tr = s["training"]
        print(f"training: {tr['parameters']} parameters, {tr['epochs']} epochs, loss train {tr['train_loss']:.3f} "
              f"test {tr['test_loss']:.3f}, {tr['seconds']:.0f} s; EM {s['em_seconds_per_config'] * 1e3:.1f} ms "
              f"per configuration; HMC data tau_int(|M|) {f(s['data']['tau_int_m_abs'])} trajectories, spacing "
              f"{s['data']['spacing']}")
    if "paper_network" in r:
        p = r["paper_network"]
        tr = p["training"]
        print(f"\npaper network: {tr['parameters']} parameters, {tr['epochs']} epochs, loss train "
              f"{tr['train_loss']:.3f} test {tr['test_loss']:.3f}, {tr['seconds']:.0f} s; EM "
              f"{p['em_seconds_per_config'] * 1e3:.1f} ms per configuration; R^2 Eq. 4.9 "
              f"{f(p['likelihood']['r2']['eq_4_9'])}, Pearson^2 {f(p['likelihood']['r2']['pearson2'])}; DM-MC "
              f"acceptance {f(p['dm_mc']['acceptance'])}")
    if "broken" in r:
        b = r["broken"]["table"]
        print(f"\nkappa = 0.5: <|M|> HMC {f(b['testing (HMC)']['m_abs'])}, DM {f(b['generated (DM)']['m_abs'])}; "
              f"<phi^2> HMC {f(b['testing (HMC)']['phi2'])}, DM {f(b['generated (DM)']['phi2'])}")
    if "crit" in r:
        c = r["crit"]
        print("\n### kappa = 0.27: tau_int(|M|) and cost\n")
        print("| algorithm | setting | acceptance | tau_int(abs M) | independent configurations / s |")
        print("|---|---|---|---|---|")
        for k, label in (("metropolis", "Metropolis"), ("hmc_paper", "HMC (paper setting)"),
                         ("hmc_tuned", "HMC (tuned)"), ("dm_mc", "DM-MC (route 2)")):
            row = c[k]
            setting = ", ".join(f"{a}={b}" for a, b in row.get("knobs", {}).items()) or "-"
            print(f"| {label} | {setting} | {f(row['acceptance'])} | "
                  f"{format_value(row['tau_int'], row['tau_int_error'])} | {row['independent_per_second']:.3g} |")
        print(f"\nDM-MC setup (HMC data + training): {c['dm_mc']['setup_seconds']:.0f} s; break-even against "
              f"tuned HMC: {c['break_even_configs']}")
        print(f"route 4 (exact divergence) on the same network: acceptance {f(c['dm_mc_exact_route']['acceptance'])}"
              f" ({c['dm_mc_exact_route']['chains']} chains x {c['dm_mc_exact_route']['sweeps']} steps, "
              f"{c['dm_mc_exact_route']['seconds']:.0f} s)")
        print("\ntuned-HMC scan (Omelyan): " + "; ".join(
            f"tau {k}: n_steps {v['knobs']['n_steps']}, acc {v['acceptance']['value']:.2f}, "
            f"tau_int {v['tau_int']:.2f}, gradients per independent {v['grads_per_independent']:.0f}"
            for k, v in c["hmc_tuned_scan"].items()))
    if "crit_exact" in r:
        e = r["crit_exact"]
        print(f"\nroute 4 at kappa = 0.27 ({e['chains']} chains x {e['sweeps']} steps, RK4 {e['rk4_steps']} steps): "
              f"acceptance {f(e['acceptance'])}, tau_int(abs M) {format_value(e['tau_int'], e['tau_int_error'])}, "
              f"{e['seconds_per_proposal']:.2f} s per proposal, <|M|> {f(e['m_abs'])}, chi {f(e['chi'])}")
    if "seconds" in r:
        print("\nstage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()))


if __name__ == "__main__":
    main()
