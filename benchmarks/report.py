"""Turns the measurements into ratios, target checks and a markdown report."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from impl_landscape import torch_grid_as_annjax
from registry import IMPLEMENTATIONS, PEER_GROUP, REFERENCE, WORKLOADS

#: The lead's targets: (label, workload, what is compared, bound).
TARGETS = (
    ("annjax fit ≥ 0.95 × jax-scan throughput", "w1", "speed", 0.95),
    ("annjax fit ≥ 0.95 × jax-scan throughput", "w2", "speed", 0.95),
    ("annjax first epoch ≤ 1.2 × jax-scan", "w1", "first_epoch", 1.2),
    ("annjax first epoch ≤ 1.2 × jax-scan", "w2", "first_epoch", 1.2),
    ("track_gradients=True ≥ 0.90 × False", "track", "track", 0.90),
    ("log_steps=True ≥ 0.98 × False", "steps", "steps", 0.98),
    ("annjax peak RSS ≤ 1.2 × jax-scan", "w1", "rss", 1.2),
    ("annjax cold ≥ 5 × faster than Keras", "cold", "cold_vs_keras", 5.0),
    ("annjax warm cache ≥ 10 × faster than Keras", "cold", "warm_vs_keras", 10.0),
    ("annjax cold ≤ hand-written JAX cold (time ratio)", "cold", "cold_vs_jax", 1.0),
    ("annjax slice ≥ 10 × faster than loss-landscapes", "landscape", "slice", 10.0),
    ("annjax λ_max ≥ 10 × faster than PyHessian", "landscape", "top_eigenvalue", 10.0),
    ("slice values agree within 1e-4 (max relative)", "landscape", "agreement", 1e-4),
    *(
        (f"fit_many ≥ {bound:g} × {peer} ({phase})", workload, kind, bound)
        for workload in ("sweep", "sweep-cnn")
        for phase in ("cold", "warm")
        for peer, bound, kind in (
            ("a loop of fit", 1.0, f"{phase}_loop_over_many"),
            ("Keras", 3.0, f"{phase}_keras_over_many"),
        )
    ),
)
#: The sweep targets: kind → (slower implementation, fit_many, phase); the
#: ratio is the slower one's wall time over fit_many's.
_SWEEP = {
    f"{phase}_{peer}_over_many": (impl, "annjax-many", phase)
    for phase in ("cold", "warm")
    for peer, impl in (("loop", "annjax-loop"), ("keras", "keras-loop"))
}
#: Target kinds met by a ratio at least the bound (the others: at most).
_AT_LEAST = (
    "speed",
    "track",
    "steps",
    "cold_vs_keras",
    "warm_vs_keras",
    "slice",
    "top_eigenvalue",
    *_SWEEP,
)
#: The landscape workload's two implementations: (annjax, peer).
_LANDSCAPE = ("annjax-landscape", "torch-landscape")
#: The cold targets: kind → (numerator, denominator) of the time ratio.
_COLD = {
    "cold_vs_keras": ("keras-cold", "annjax-cold"),
    "warm_vs_keras": ("keras-cold", "annjax-warm"),
    "cold_vs_jax": ("annjax-cold", "jax-cold"),
}


def flops_per_sample(sizes) -> float:
    """Returns 6 FLOPs per weight (forward 2, backward 4) for one training sample."""
    return 6.0 * sum(m * n for m, n in itertools.pairwise(sizes))


def _ok(records: list[dict]) -> dict[str, dict]:
    return {r["impl"]: r for r in records if r["status"] == "ok"}


def _median(record: dict) -> float:
    return record["samples_per_s"]["median"]


def gemm_ceiling(records: list[dict]) -> float | None:
    """Returns the best median GFLOP/s of the GEMM runs, or None if none ran."""
    rates = [
        r["gflops"]["median"]
        for r in records
        if r["workload"] == "gemm" and r["status"] == "ok"
    ]
    return max(rates) if rates else None


def summarize(records: list[dict]) -> dict[str, Any]:
    """Returns per-workload ratios (× scan, × best peer, % of GEMM) and targets."""
    ceiling = gemm_ceiling(records)
    by_workload: dict[str, list[dict]] = {}
    for r in records:
        by_workload.setdefault(r["workload"], []).append(r)
    summary: dict[str, Any] = {"gemm_ceiling_gflops": ceiling, "workloads": {}}
    for name, recs in by_workload.items():
        if WORKLOADS[name].kind == "cold":
            summary["workloads"][name] = {"rows": cold_rows(_ok(recs))}
        if WORKLOADS[name].kind == "landscape":
            summary["workloads"][name] = {"rows": landscape_rows(_ok(recs))}
        if WORKLOADS[name].kind == "sweep":
            summary["workloads"][name] = {"rows": sweep_rows(_ok(recs))}
        if WORKLOADS[name].kind != "train":
            continue
        ok = _ok(recs)
        ref = ok.get(REFERENCE)
        peers = {
            k: _median(v)
            for k, v in ok.items()
            if IMPLEMENTATIONS[k].group == PEER_GROUP
        }
        best_peer = max(peers, key=peers.get) if peers else None
        rows = {}
        for impl, r in ok.items():
            rate = _median(r)
            gflops = rate * flops_per_sample(r["config"]["sizes"]) / 1e9
            rows[impl] = {
                "vs_scan": rate / _median(ref) if ref else None,
                "vs_best_peer": rate / peers[best_peer] if best_peer else None,
                "gflops": gflops,
                "gemm_fraction": gflops / ceiling if ceiling else None,
            }
        summary["workloads"][name] = {"best_peer": best_peer, "rows": rows}
    summary["targets"] = check_targets(by_workload)
    return summary


#: Targets on an annjax option: the implementation measured against ``annjax``.
_VARIANTS = {"track": "annjax-track", "steps": "annjax-steps"}


def cold_rows(ok: dict[str, dict]) -> dict[str, dict]:
    """Returns each cold run's times and its wall-time ratios to Keras and JAX.

    ``*_cpu`` are the same ratios of CPU times (to read on a loaded machine).
    """
    keras, hand = ok.get("keras-cold"), ok.get("jax-cold")
    rows = {}
    for impl, r in ok.items():
        row = {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"]}
        for t, suffix in (("wall_s", ""), ("cpu_s", "_cpu")):
            row["keras_over_this" + suffix] = keras[t] / r[t] if keras else None
            row["this_over_jax" + suffix] = r[t] / hand[t] if hand else None
        rows[impl] = row
    return rows


def landscape_rows(ok: dict[str, dict]) -> dict[str, Any]:
    """Returns the peer/annjax time ratios (steady and first call) of both tasks,
    the slices' max relative difference and the eigenvalues' relative one."""
    a, t = (ok.get(name) for name in _LANDSCAPE)
    if a is None or t is None:
        return {}
    out: dict[str, Any] = {}
    for task in ("slice", "top_eigenvalue"):
        out[task] = t[task]["median_s"] / a[task]["median_s"]
        out[task + "_first"] = t[task]["first_s"] / a[task]["first_s"]
    mine = np.asarray(a["slice"]["value"])
    mask, theirs = torch_grid_as_annjax(np.asarray(t["slice"]["value"]))
    out["agreement"] = float(np.max(np.abs(mine - theirs)[mask] / np.abs(theirs)[mask]))
    la, lt = a["top_eigenvalue"]["value"], t["top_eigenvalue"]["value"]
    out["eigenvalue_difference"] = abs(la - lt) / abs(lt)
    return out


def sweep_rows(ok: dict[str, dict]) -> dict[str, dict]:
    """Returns each sweep run's cold and warm times over fit_many's (wall, CPU)."""
    many = ok.get("annjax-many")
    rows = {}
    for impl, r in ok.items():
        row = {}
        for phase in ("cold", "warm"):
            for t in (f"{phase}_s", f"{phase}_cpu_s"):
                row[t] = r[t]
                row[t + "_over_many"] = r[t] / many[t] if many else None
        rows[impl] = row
    return rows


def _target_value(kind: str, ok: dict[str, dict]) -> float | None:
    if kind in ("slice", "top_eigenvalue", "agreement"):
        return landscape_rows(ok).get(kind)
    if kind in _SWEEP:
        slow, many, phase = _SWEEP[kind]
        if slow in ok and many in ok:
            return ok[slow][f"{phase}_s"] / ok[many][f"{phase}_s"]
        return None
    if kind in _COLD:
        num, den = _COLD[kind]
        if num in ok and den in ok:
            return ok[num]["wall_s"] / ok[den]["wall_s"]
        return None
    if kind in _VARIANTS:
        variant = _VARIANTS[kind]
        if variant in ok and "annjax" in ok:
            return _median(ok[variant]) / _median(ok["annjax"])
        return None
    if "annjax" not in ok or REFERENCE not in ok:
        return None
    a, s = ok["annjax"], ok[REFERENCE]
    if kind == "speed":
        return _median(a) / _median(s)
    if kind == "first_epoch":
        return a["first_epoch_s"] / s["first_epoch_s"]
    return a["peak_rss_mib"] / s["peak_rss_mib"]


def check_targets(by_workload: dict[str, list[dict]]) -> list[dict]:
    """Returns each target with its measured ratio and whether it is met."""
    out = []
    for label, workload, kind, bound in TARGETS:
        value = _target_value(kind, _ok(by_workload.get(workload, [])))
        met = None
        if value is not None:
            met = value >= bound if kind in _AT_LEAST else value <= bound
        out.append(
            {
                "target": label,
                "workload": workload,
                "bound": bound,
                "ratio": value,
                "met": met,
            }
        )
    return out


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def _rate(spread: dict[str, float]) -> str:
    return f"{spread['median']:,.0f} [{spread['min']:,.0f}–{spread['max']:,.0f}]"


def _train_table(recs: list[dict], info: dict) -> list[str]:
    lines = [
        "| implementation | samples/s median [min–max] | × jax-scan | × best peer "
        "| first epoch s | compile s | peak RSS MiB | GFLOP/s | % GEMM | loss |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        if r["status"] != "ok":
            lines.append(f"| {r['impl']} | {r['status']}: {r['reason']} |||||||||")
            continue
        row = info["rows"][r["impl"]]
        lines.append(
            f"| {r['impl']} | {_rate(r['samples_per_s'])} "
            f"| {_fmt(row['vs_scan'], '.2f')} | {_fmt(row['vs_best_peer'], '.2f')} "
            f"| {r['first_epoch_s']:.2f} | {r['compile_s']:.2f} "
            f"| {r['peak_rss_mib']:.0f} | {row['gflops']:.1f} "
            f"| {_fmt(row['gemm_fraction'], '.0%')} "
            f"| {r['first_loss']:.3f} → {r['final_loss']:.3f} |"
        )
    return lines


def _gemm_table(recs: list[dict]) -> list[str]:
    lines = [
        "| implementation | GFLOP/s median [min–max] | first call s | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for r in recs:
        if r["status"] != "ok":
            lines.append(f"| {r['impl']} | {r['status']}: {r['reason']} |||")
            continue
        g = r["gflops"]
        lines.append(
            f"| {r['impl']} (n={r['n']}) | {g['median']:.1f} "
            f"[{g['min']:.1f}–{g['max']:.1f}] | {r['first_epoch_s']:.3f} "
            f"| {r['peak_rss_mib']:.0f} |"
        )
    return lines


def _cold_table(recs: list[dict], rows: dict[str, dict]) -> list[str]:
    out = [
        "| implementation | cache | process wall s | CPU s | Keras / this "
        "(wall, CPU) | this / jax-cold (wall, CPU) | mean final val accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        if r["status"] != "ok":
            out.append(f"| {r['impl']} | {r['status']}: {r['reason']} ||||||")
            continue
        row = rows[r["impl"]]
        acc = ", ".join(f"{k} {v:.3f}" for k, v in r["accuracy"].items())
        out.append(
            f"| {r['impl']} | {r['cache']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} "
            f"| {_fmt(row['keras_over_this'], '.2f')}, "
            f"{_fmt(row['keras_over_this_cpu'], '.2f')} "
            f"| {_fmt(row['this_over_jax'], '.2f')}, "
            f"{_fmt(row['this_over_jax_cpu'], '.2f')} | {acc} |"
        )
    return out


def _landscape_table(recs: list[dict], rows: dict) -> list[str]:
    out = [
        "| implementation | slice s (first) | λ_max s (first) | λ_max |",
        "|---|---|---|---|",
    ]
    for r in recs:
        if r["status"] != "ok":
            out.append(f"| {r['impl']} | {r['status']}: {r.get('reason', '')} | | |")
            continue
        s, e = r["slice"], r["top_eigenvalue"]
        out.append(
            f"| {r['impl']} | {s['median_s']:.3f} ({s['first_s']:.2f}) | "
            f"{e['median_s']:.3f} ({e['first_s']:.2f}) | {e['value']:.6g} |"
        )
    if rows:
        out += [
            "",
            f"annjax is {rows['slice']:.1f} × faster on the slice "
            f"({rows['slice_first']:.1f} × on the first call, compilation "
            f"included) and {rows['top_eigenvalue']:.1f} × on λ_max "
            f"({rows['top_eigenvalue_first']:.1f} ×); the slices differ by at most "
            f"{rows['agreement']:.2g} (relative), the eigenvalues by "
            f"{rows['eigenvalue_difference']:.2g}.",
        ]
    return out


def _sweep_table(recs: list[dict], rows: dict[str, dict]) -> list[str]:
    out = [
        "| implementation | cold wall s | cold CPU s | warm wall s | warm CPU s "
        "| this / fit_many cold (wall, CPU) | this / fit_many warm (wall, CPU) "
        "| mean final val accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        if r["status"] != "ok":
            out.append(f"| {r['impl']} | {r['status']}: {r['reason']} |||||||")
            continue
        row = rows[r["impl"]]
        ratios = [
            f"{_fmt(row[f'{p}_s_over_many'], '.2f')}, "
            f"{_fmt(row[f'{p}_cpu_s_over_many'], '.2f')}"
            for p in ("cold", "warm")
        ]
        out.append(
            f"| {r['impl']} | {r['cold_s']:.2f} | {r['cold_cpu_s']:.2f} "
            f"| {r['warm_s']:.2f} | {r['warm_cpu_s']:.2f} | {ratios[0]} "
            f"| {ratios[1]} | {sum(r['warm_accuracy']) / len(r['warm_accuracy']):.3f} |"
        )
    return out


def markdown(meta: dict, records: list[dict], summary: dict) -> str:
    """Returns the report: environment, one table per workload, the targets."""
    threads = meta["threads"]
    title = "# annjax benchmarks"
    if meta["quick"]:
        title += " (--quick: a smoke run, its timings mean nothing)"
    out = [
        title,
        "",
        f"- CPU: {meta['cpu']} — {threads['cpu_count']} cores "
        f"({threads['affinity']} usable); load average "
        f"{meta['load_before'][0]:.2f} before, {meta['load_after'][0]:.2f} after",
        f"- threads: {', '.join(f'{k}={v}' for k, v in threads['env'].items())}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        f"- {meta['started']}, {meta['duration_s']:.0f} s in all; every "
        f"implementation in its own process, {meta['jobs']} at a time; "
        "throughput = samples of one pass over the data / steady epoch time "
        "(warm-up excluded)",
        "",
    ]
    by_workload: dict[str, list[dict]] = {}
    for r in records:
        by_workload.setdefault(r["workload"], []).append(r)
    for name, recs in by_workload.items():
        workload = WORKLOADS[name]
        settings = recs[0]["config"]
        out += [f"## {workload.title}", ""]
        if workload.kind == "train":
            info = summary["workloads"][name]
            out.append(
                f"{settings['n_samples']:,} samples, {settings['repeats']} repeats "
                f"of {settings['epochs_per_repeat']} epoch(s); best peer: "
                f"{info['best_peer'] or '–'}; GEMM ceiling "
                f"{_fmt(summary['gemm_ceiling_gflops'], '.1f', ' GFLOP/s')}."
            )
            out += ["", *_train_table(recs, info), ""]
        elif workload.kind == "cold":
            out += [*_cold_table(recs, summary["workloads"][name]["rows"]), ""]
        elif workload.kind == "landscape":
            out += [*_landscape_table(recs, summary["workloads"][name]["rows"]), ""]
        elif workload.kind == "sweep":
            out += [*_sweep_table(recs, summary["workloads"][name]["rows"]), ""]
        else:
            out += [*_gemm_table(recs), ""]
    out += [
        "## Targets",
        "",
        "| target | workload | ratio | met |",
        "|---|---|---|---|",
    ]
    for t in summary["targets"]:
        met = {True: "yes", False: "NO", None: "not run"}[t["met"]]
        out.append(
            f"| {t['target']} | {t['workload']} | {_fmt(t['ratio'], '.3f')} | {met} |"
        )
    return "\n".join(out) + "\n"
