"""How well each ARIA run's tracker separates the regions and agrees with the held-out monitor.

Usage: python scripts/tracker_signal_summary.py EXPERIMENT_DIR
Reads EXPERIMENT_DIR/runs/*/metrics.jsonl (runs with tracker estimates and held-out measurements)
and writes EXPERIMENT_DIR/tracker_summary.json, printing one line per run and per method:
- rank_correlation: Spearman correlation over regions of the tracker's estimates and the held-out
  discrepancy at every step that logged both (the report's tracking_correlation, at every step),
  and its mean over those steps;
- estimates_cv: the coefficient of variation of the final estimates across regions (how much the
  tracked signal separates the regions: 0 = not at all);
- pi_min, pi_max: the final allocation's range (uniform over K regions is 1/K);
- pi_step_tv: the median total variation of pi between consecutive logged steps, and pi_peak the
  largest share any region got, both after the first fifth of the logged steps (the warm-up):
  how jumpy the allocation is (the simulator's is compared with `aria sim allocation --log-every`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def floats(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], float)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    ranks = [np.argsort(np.argsort(v[keep])) for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def summarise(metrics: Path) -> dict:
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    both = [r for r in records if r.get("estimates") is not None and r.get("heldout") is not None]
    correlations = [(r["step"], spearman(floats(r["estimates"]), floats(r["heldout"]))) for r in both]
    final = [r for r in records if r.get("estimates") is not None][-1]
    estimates, pi = floats(final["estimates"]), np.array(final["pi"], float)
    pis = np.array([r["pi"] for r in records if r.get("pi") is not None], float)
    pis = pis[len(pis) // 5:]
    return {"rank_correlation": correlations, "mean_rank_correlation": float(np.mean([c for _, c in correlations])),
            "estimates_cv": float(np.nanstd(estimates) / np.nanmean(estimates)),
            "pi_min": float(pi.min()), "pi_max": float(pi.max()),
            "pi_step_tv": float(np.median(0.5 * np.abs(np.diff(pis, axis=0)).sum(1))), "pi_peak": float(pis.max())}


def main(folder: Path) -> int:
    runs = {m.parent.name: summarise(m) for m in sorted(folder.glob("runs/*/metrics.jsonl"))
            if '"estimates"' in m.read_text()}
    if not runs:
        print(f"{folder}: no run with tracker estimates", file=sys.stderr)
        return 2
    methods: dict[str, list[dict]] = {}
    for name, summary in runs.items():
        methods.setdefault(name.rsplit("-seed", 1)[0], []).append(summary)
        print(f"{name:24s} mean rank corr {summary['mean_rank_correlation']:+.2f}  estimates cv "
              f"{summary['estimates_cv']:.2f}  pi {summary['pi_min']:.3f}..{summary['pi_max']:.3f}  "
              f"pi step tv {summary['pi_step_tv']:.3f}  peak {summary['pi_peak']:.3f}")
    by_method = {}
    for method, summaries in methods.items():
        by_method[method] = {key: float(np.mean([s[key] for s in summaries]))
                             for key in ("mean_rank_correlation", "estimates_cv", "pi_min", "pi_max", "pi_step_tv",
                                         "pi_peak")}
        by_method[method]["runs"] = len(summaries)
        print(f"{method:24s} over {len(summaries)} runs: " + ", ".join(
            f"{k} {v:.3f}" for k, v in by_method[method].items() if k != "runs"))
    (folder / "tracker_summary.json").write_text(json.dumps({"runs": runs, "methods": by_method}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
