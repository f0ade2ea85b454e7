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

from aria_train.worlds import ATTRIBUTES, AttributeChecker

GROUP_ORDER = ("seen", "unseen", "under")
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


def accuracy_by_region(checker: AttributeChecker, images: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
    """Attribute accuracy per region of uint8 images (N, H, W, 3) of the prompts in ``table``
    (which holds the intended attribute columns): one column per attribute and ``all``
    (every attribute right)."""
    missing = [a for a in ATTRIBUTES if a not in table]
    if missing:
        raise ValueError(f"attribute accuracy needs the attribute columns {missing} in the prompt table")
    read = checker.read(images)
    correct = {a: read[a].to_numpy() == table[a].to_numpy() for a in ATTRIBUTES}
    correct["all"] = np.logical_and.reduce(list(correct.values()))
    return region_means(table, pd.DataFrame({k: v.astype(np.float64) for k, v in correct.items()}))


def summarise_groups(per_region: pd.DataFrame, column: str, worst: Literal["max", "min"]) -> pd.DataFrame:
    """Per group (and ``all``): mean over regions of ``column``, its worst region and value.

    ``worst`` says which end is bad: "max" for a discrepancy, "min" for an accuracy.
    """
    groups = [g for g in GROUP_ORDER if g in set(per_region["group"])]
    groups += sorted(set(per_region["group"]) - set(groups))
    rows = []
    for group in [*groups, "all"] if len(groups) > 1 else groups:
        part = per_region if group == "all" else per_region[per_region["group"] == group]
        at = part[column].idxmax() if worst == "max" else part[column].idxmin()
        rows.append({"group": group, "regions": len(part), "mean": float(part[column].mean()),
                     "worst": float(part.loc[at, column]), "worst_region": str(part.loc[at, "region_name"])})
    return pd.DataFrame(rows)
