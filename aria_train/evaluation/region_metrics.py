"""Per-region tables and group summaries of evaluation metrics (docs/design.md §6); pandas only.

A *prompt table* has one row per evaluated prompt with the columns ``region`` (int),
``region_name`` (str) and ``group`` ("seen" / "unseen" / "under", or anything else); tables
without regions are treated as one region "all" in group "all" (see ``with_regions``).
Region metrics are means over the region's prompts; a group's summary is the mean over its
regions (each region counts once, whatever its number of prompts) and its worst region.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from aria_train.worlds import AttributeChecker, GlyphChecker

# Groups in display order: the default world's, then the glyph world's (by pool share, head first).
GROUP_ORDER = ("seen", "unseen", "head", "mid", "under", "unseen-head", "unseen-tail")
WEIGHTED = "weighted"  # the summary row of the prompt-share-weighted mean over all regions
REGION_COLUMNS = ["region", "region_name", "group"]


def with_regions(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with region / region_name / group columns filled in where missing."""
    table = table.reset_index(drop=True).copy()
    if "region" not in table:
        table["region"] = 0
        table["region_name"] = "all"
    if "region_name" not in table:
        table["region_name"] = [f"region {r}" for r in table["region"]]
    if "group" not in table:
        table["group"] = "all"
    return table


def region_means(table: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """Mean of each column of ``values`` (row i belongs to prompt i of ``table``) per region,
    with the region's name, group and prompt count ``n``; sorted by region id."""
    frame = pd.concat([table[REGION_COLUMNS].reset_index(drop=True), values.reset_index(drop=True)], axis=1)
    grouped = frame.groupby(REGION_COLUMNS, sort=True)
    out = grouped[list(values.columns)].mean()
    out.insert(0, "n", grouped.size())
    return out.reset_index()


def accuracy_by_region(checker: AttributeChecker | GlyphChecker, images: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per region of uint8 images (N, H, W, 3) of the prompts in ``table`` (which holds
    the intended attribute columns), as read by the world's checker: one column per check of
    ``checker.score`` (each attribute; for a glyph world region_correct, shared_bit_acc and
    specific_bit_acc) and ``all`` (every attribute right)."""
    return region_means(table, checker.score(images, table))


def summarise_groups(per_region: pd.DataFrame, column: str, worst: Literal["max", "min"],
                     shares: pd.Series | None = None) -> pd.DataFrame:
    """Per group (and ``all``): mean over regions of ``column``, its worst region and value.

    ``worst`` says which end is bad: "max" for a discrepancy, "min" for an accuracy. ``shares``
    (pool share per region id) adds the row ``weighted``: the mean weighted by each region's
    share of the prompt pool, what a user drawing prompts as the pool does would see (regions
    without a share count 0; its worst region is the all row's).
    """
    groups = [g for g in GROUP_ORDER if g in set(per_region["group"])]
    groups += sorted(set(per_region["group"]) - set(groups))
    rows = []
    for group in [*groups, "all"] if len(groups) > 1 else groups:
        part = per_region if group == "all" else per_region[per_region["group"] == group]
        at = part[column].idxmax() if worst == "max" else part[column].idxmin()
        rows.append({"group": group, "regions": len(part), "mean": float(part[column].mean()),
                     "worst": float(part.loc[at, column]), "worst_region": str(part.loc[at, "region_name"])})
    if shares is not None:
        weights = per_region["region"].map(shares).fillna(0.0).to_numpy(np.float64)
        values = per_region[column].to_numpy(np.float64)
        known = np.isfinite(values) & (weights > 0)
        rows.append({**rows[-1], "group": WEIGHTED, "regions": int(known.sum()),
                     "mean": float(np.average(values[known], weights=weights[known])) if known.any() else float("nan")})
    return pd.DataFrame(rows)
