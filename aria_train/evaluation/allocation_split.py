"""Does a policy's gap to region-uniform follow the draws it moved? Its split and its offset, per seed.

An allocation policy (ARIA, the progress policy) differs from region-uniform sampling only in how it
splits the switched draws -- the samples whose caption was replaced by a prompt of a region it chose
-- over the regions. Its effect on region k should therefore follow its draws there. Per seed, with
D_k the p(t)-weighted discrepancy of region k (`aria eval`'s discrepancy.csv, t = "pt") and s_k the
run's switched draws of region k (metrics.jsonl ``switched_region_counts``, summed over records),
``split_fit`` fits over the regions

    ln(D_k / D_k^uniform) = slope * ln(s_k / s_k^uniform) + ln(offset)

The slope is how the regions responded to the draws the policy moved (a power-law response to
draws, D ~ s^-alpha, gives -alpha); the offset is the factor every region shares whatever its
draws did: a difference between whole runs (once the draws diverge the student follows another
trajectory), not an effect of the split. Where the policy's ratio to region-uniform (``ratio``,
mean D over mean D^uniform) is close to its offset, the split explains little of it, however many
seeds agree in sign. The fit gives all regions one slope: where they respond differently -- the
test bed's blind regions get worse with more draws while the others improve -- the offset absorbs
the allocation's effect as well (ARIA in the blind cell: offsets 1.07-1.12 at slopes near 0), so
read it beside the slope and the per-region ratios. Measured on the test bed: docs/test_bed.md, "How much
could any allocation gain".

``paired_test`` asks whether a policy's ratio differs from 1 more than its spread over seeds allows:
a two-sided paired t-test on ln(ratio) at 5%, the seeds' runs being independent pairs.
``teacher_effect`` asks, for one cell run with several teachers, whether the ratio depends on the
teacher (one-way analysis of variance of ln(ratio) over teachers) and how large that dependence is:
the number of teachers a comparison between two cells needs follows from it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def switched_draws(run: Path) -> np.ndarray:
    """Switched draws per region over a run (int64 (K,); empty if its metrics record none)."""
    records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line]
    counts = [r["switched_region_counts"] for r in records if "switched_region_counts" in r]
    return np.sum(counts, axis=0).astype(np.int64) if counts else np.zeros(0, np.int64)


def split_fit(draws: np.ndarray, discrepancy: np.ndarray, uniform_draws: np.ndarray,
              uniform_discrepancy: np.ndarray) -> tuple[float, float]:
    """(slope, offset) of the least-squares line of ln(D / D^uniform) on ln(s / s^uniform) over the
    regions where both runs drew at least once; arrays (K,) in region order (module docstring)."""
    keep = (np.asarray(draws) > 0) & (np.asarray(uniform_draws) > 0)
    x = np.log(np.asarray(draws, float)[keep] / np.asarray(uniform_draws, float)[keep])
    y = np.log(np.asarray(discrepancy, float)[keep] / np.asarray(uniform_discrepancy, float)[keep])
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(np.exp(intercept))


def allocation_split(discrepancy, runs: dict[str, tuple[str, int]], runs_dir: Path, uniform: str,
                     policies: list[str]):
    """Per policy and seed: ``ratio`` (mean D over the region-uniform run's of the same seed),
    ``slope`` and ``offset`` (``split_fit``). ``discrepancy``: `aria eval`'s discrepancy.csv
    (DataFrame); ``runs``: run name -> (method name, seed); ``runs_dir``: the folder of the runs;
    ``uniform``: the method name of region-uniform sampling; ``policies``: the method names compared
    with it. DataFrame, or None where a run lacks draws or p(t)-weighted rows."""
    import pandas as pd

    pt = discrepancy[discrepancy["t"].astype(str) == "pt"]
    if pt.empty:
        return None
    by_seed = {(method, seed): name for name, (method, seed) in runs.items()}
    rows = []
    for (method, seed), name in by_seed.items():
        reference = by_seed.get((uniform, seed))
        if method not in policies or reference is None:
            continue
        values = [pt[pt["model"] == run].sort_values("region")["discrepancy"].to_numpy() for run in (name, reference)]
        draws = [switched_draws(Path(runs_dir) / run) for run in (name, reference)]
        if any(len(d) == 0 for d in draws) or any(len(v) != len(draws[0]) for v in values):
            return None
        slope, offset = split_fit(draws[0], values[0], draws[1], values[1])
        rows.append({"method": method, "seed": seed, "ratio": float(values[0].mean() / values[1].mean()),
                     "slope": slope, "offset": offset})
    return pd.DataFrame(rows) if rows else None


def paired_test(split: "pd.DataFrame") -> "pd.DataFrame":
    """Per method of an ``allocation_split`` table: ``seeds`` n, ``ratio`` the geometric mean of the
    per-seed ratios, ``sd_log`` the sample sd of ln(ratio), ``t`` = mean ln(ratio) / (sd_log / sqrt n),
    ``critical`` the two-sided 5% value of Student's t with n - 1 degrees of freedom, ``significant``
    |t| > critical, and ``seeds_for_2pct`` the seeds a paired test needs to find a 2% effect at that
    sd with power 0.8 (the least n with sqrt(n) * ln(1.02) / sd_log >= t_{0.975, n-1} + t_{0.8, n-1};
    docs/test_bed.md's normal approximation, n = (2.8 sd / 0.02)^2, is a little lower). Methods with fewer
    than 2 seeds are left out (no spread); ``seeds_for_2pct`` is empty past 100,000."""
    import pandas as pd
    from scipy import stats

    rows = []
    for method, part in split.groupby("method", sort=False):
        logs = np.log(part["ratio"].to_numpy(float))
        n = len(logs)
        if n < 2:
            continue
        sd = float(logs.std(ddof=1))
        t = float(logs.mean() / (sd / np.sqrt(n))) if sd > 0 else float("inf") * np.sign(logs.mean())
        critical = float(stats.t.ppf(0.975, n - 1))
        m = np.arange(2, 100_001)
        enough = np.sqrt(m) * np.log(1.02) >= sd * (stats.t.ppf(0.975, m - 1) + stats.t.ppf(0.8, m - 1))
        needed = int(m[enough.argmax()]) if enough.any() else None
        rows.append({"method": method, "seeds": n, "ratio": float(np.exp(logs.mean())), "sd_log": sd, "t": t,
                     "critical": critical, "significant": bool(abs(t) > critical), "seeds_for_2pct": needed})
    return pd.DataFrame(rows)


def teacher_effect(split: "pd.DataFrame", by: str = "teacher") -> "pd.DataFrame":
    """Per method of an ``allocation_split`` table whose rows carry a ``by`` column (one value per
    teacher), the one-way random-effects analysis of ln(ratio) over teachers: ``teachers`` k,
    ``replicates`` N, ``sd_within`` the pooled sd over seeds within a teacher (sqrt MSW), ``sd_teacher``
    the sd of the teachers' own effects (sqrt(max(0, (MSB - MSW) / n0)), n0 = (N - sum n_i^2 / N) / (k - 1),
    the seeds per teacher when balanced), ``F`` = MSB / MSW and ``p`` its upper tail with (k - 1, N - k)
    degrees of freedom (small p: the teachers differ more than their seeds explain), ``sd_teacher_mean``
    the sd of one teacher's mean over n0 seeds (sqrt(sd_teacher^2 + MSW / n0)), and ``teachers_for_5pct``
    how many teachers (n0 seeds each) each of two cells needs for their mean ratios to show a 5%
    difference at 5% two-sided with power 0.8 (normal approximation: 2 sd_teacher_mean^2
    (z_0.975 + z_0.8)^2 / ln(1.05)^2, rounded up). Methods with fewer than 2 teachers or a teacher with
    fewer than 2 seeds are left out."""
    import pandas as pd
    from scipy import stats

    rows = []
    for method, part in split.groupby("method", sort=False):
        groups = [np.log(g["ratio"].to_numpy(float)) for _, g in part.groupby(by, sort=False)]
        sizes = np.array([len(g) for g in groups])
        k, total = len(groups), int(sizes.sum())
        if k < 2 or sizes.min() < 2:
            continue
        grand = np.concatenate(groups).mean()
        msb = float(sum(n * (g.mean() - grand) ** 2 for n, g in zip(sizes, groups)) / (k - 1))
        msw = float(sum(((g - g.mean()) ** 2).sum() for g in groups) / (total - k))
        n0 = (total - (sizes ** 2).sum() / total) / (k - 1)
        between = max(0.0, (msb - msw) / n0)
        f = msb / msw if msw > 0 else float("inf")
        per_teacher = between + msw / n0
        z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
        rows.append({"method": method, "teachers": k, "replicates": total, "sd_within": float(np.sqrt(msw)),
                     "sd_teacher": float(np.sqrt(between)), "F": f, "p": float(stats.f.sf(f, k - 1, total - k)),
                     "sd_teacher_mean": float(np.sqrt(per_teacher)),
                     "teachers_for_5pct": int(np.ceil(2 * per_teacher * z ** 2 / np.log(1.05) ** 2))})
    return pd.DataFrame(rows)


def teacher_means(split: "pd.DataFrame", by: str = "teacher") -> "pd.DataFrame":
    """Per (method, ``by``) of an ``allocation_split`` table: the teacher's ``ratio``, the geometric mean over
    its seeds -- the one replicate per teacher of the tests that keep a teacher's own effect as noise."""
    logs = split.assign(log=np.log(split["ratio"].to_numpy(float))).groupby(["method", by], sort=False)["log"].mean()
    return np.exp(logs).rename("ratio").reset_index()


def cell_difference(first: "pd.DataFrame", second: "pd.DataFrame", by: str = "teacher") -> "pd.DataFrame":
    """Per method in both ``allocation_split`` tables (two cells, e.g. two points of a map; rows carry a
    ``by`` column, one value per teacher): do the cells' gains differ? Each teacher's mean ln(ratio) over
    its seeds is one replicate (a teacher's own effect is noise, as in the teacher-means test), and the two
    cells' teachers are compared by Welch's t-test (unequal variances: one cell's few teachers may agree by
    chance): ``teachers_first`` / ``teachers_second``, ``ratio_first`` / ``ratio_second`` (geometric means
    over teachers), ``second_over_first`` their quotient, ``t`` = (mean_2 - mean_1) / sqrt(v_1 / n_1 + v_2 / n_2),
    ``df`` Welch-Satterthwaite's, ``critical`` the two-sided 5% value of Student's t at ``df``, ``p`` and
    ``significant``. Methods with fewer than 2 teachers in a cell are left out."""
    import pandas as pd
    from scipy import stats

    means_first, means_second = teacher_means(first, by), teacher_means(second, by)
    rows = []
    for method in dict.fromkeys(first["method"]):
        if method not in set(second["method"]):
            continue
        a = np.log(means_first.loc[means_first["method"] == method, "ratio"].to_numpy())
        b = np.log(means_second.loc[means_second["method"] == method, "ratio"].to_numpy())
        if len(a) < 2 or len(b) < 2:
            continue
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        diff = b.mean() - a.mean()
        if va + vb > 0:
            t = float(diff / np.sqrt(va + vb))
            df = float((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)))
        else:  # no spread in either cell: any difference is certain
            t, df = float("inf") * np.sign(diff), float(len(a) + len(b) - 2)
        critical = float(stats.t.ppf(0.975, df))
        rows.append({"method": method, "teachers_first": len(a), "teachers_second": len(b),
                     "ratio_first": float(np.exp(a.mean())), "ratio_second": float(np.exp(b.mean())),
                     "second_over_first": float(np.exp(diff)), "t": t, "df": df, "critical": critical,
                     "p": float(2 * stats.t.sf(abs(t), df)), "significant": bool(abs(t) > critical)})
    return pd.DataFrame(rows)
