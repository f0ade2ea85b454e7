"""Write one self-contained HTML report of distillation runs: losses, ARIA's allocation, evaluation.

Reads each RUN_DIR (config.json, metrics.jsonl, the pool file named in the config for region
names and groups, and RUN/eval/ as written by `aria eval`) and writes one HTML file whose
figures are embedded as base64 PNGs, so it can be mailed or archived on its own. Sections:

1. the runs' key config values;
2. loss curves (loss, out, feat), one line per run, so RC and ARIA runs compare on one plot;
3. ARIA runs: the allocation pi over training, stacked by region;
4. ARIA runs: per region, the tracker estimate and (where logged) the held-out discrepancy,
   both relative to their mean over the regions at that step;
5. drawn (switched) conditions per region, summed over the run;
6. RUN/eval/summary.csv as a table and its sample grids, when present.

Regions are named and coloured by group (seen blues, unseen reds, under greens) when the pool
has region_name / group columns, else "region k". --out is replaced if it exists.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aria_train.conditioning.aria import AriaOptions
from aria_train.runs.run_dir import distinct_names

LOSS_KEYS = ("loss", "out", "feat")
CONFIG_KEYS = ("method", "sampler", "steps", "batch_size", "grad_accum", "lr", "student_variant", "switch_schedule",
               "null_prob", "seed", "pool", "heldout_every")
ARIA_KEYS = tuple(f"aria_{f.name}" for f in dataclasses.fields(AriaOptions))
GROUP_MAPS = {"seen": "Blues", "unseen": "Reds", "under": "Greens", "all": "viridis"}
OTHER_MAPS = ("Purples", "Oranges", "Greys")  # further groups, in order of appearance
LEGEND_REGIONS_MAX = 12  # above this many regions, legends name groups instead of regions


@dataclass
class Regions:
    """Name, group and colour of each region, and the plotting order that keeps each group together."""

    names: list[str]
    groups: list[str]
    colours: list[tuple]
    group_colours: dict[str, tuple]  # a mid shade per group, for legends and titles
    order: list[int]
    note: str  # why regions are unnamed, if they are; shown under the config table

    def label(self, region: int) -> str:
        group = self.groups[region]
        return self.names[region] if group == "all" else f"{self.names[region]} ({group})"


@dataclass
class Run:
    name: str
    path: Path
    config: dict
    records: list[dict]
    regions: Regions | None  # None when the records carry no per-region values

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) over the records holding ``key``: values (n,) or (n, K), null -> NaN,
        so a non-finite interval is a gap in a line rather than a straight segment across it."""
        rows = [r for r in self.records if key in r]
        return np.array([r["step"] for r in rows], dtype=float), np.array([_floats(r[key]) for r in rows], dtype=float)

    def is_aria(self) -> bool:
        """Whether the records carry the ARIA sampler's metrics (it always logs pi and estimates together)."""
        return any("pi" in r and "estimates" in r for r in self.records)


def _floats(value: float | list | None) -> float | list[float]:
    return [np.nan if v is None else v for v in value] if isinstance(value, list) else np.nan if value is None else value


def load_run(path: str | Path, name: str) -> Run:
    """Read a run directory; ValueError (one line) when it is not a run with at least one record."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"run directory {path} {'is a file' if path.exists() else 'not found'}")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise ValueError(f"{path} has no metrics.jsonl: not a distillation run directory")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read config.json: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}/config.json is not a JSON object")
    records = []
    for number, line in enumerate(metrics.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{metrics} line {number} is not JSON: {err}") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ValueError(f"{metrics} line {number} is not a metrics record with an integer step")
        records.append(record)
    if not records:
        raise ValueError(f"{metrics} holds no records yet")
    k = next((len(r[key]) for r in records for key in ("pi", "region_counts") if isinstance(r.get(key), list)), 0)
    return Run(name, path, config, records, region_labels(config.get("pool", ""), k) if k else None)


def region_labels(pool: str, k: int) -> Regions:
    """Names and groups of regions 0..k-1 from the pool file's region / region_name / group
    columns; regions the pool does not describe (or all, without a readable pool) keep "region k"."""
    from aria_train.data.pool import PromptPool

    names, groups, note = [f"region {i}" for i in range(k)], ["all"] * k, ""
    try:
        table = PromptPool.from_file(pool).table if pool else None
    except (OSError, ValueError) as err:
        table, note = None, f"regions unnamed: {err}"
    if table is not None and "region" in table.column_names:
        columns = [c for c in ("region", "region_name", "group") if c in table.column_names]
        for row in table.select(columns).to_pandas().drop_duplicates("region").itertuples():
            if row.region < k:
                names[row.region] = str(getattr(row, "region_name", names[row.region]))
                groups[row.region] = str(getattr(row, "group", "all"))
    elif table is not None:
        note = f"regions unnamed: pool {pool} has no region column"
    ranked = [g for g in GROUP_MAPS if g in groups] + [g for g in dict.fromkeys(groups) if g not in GROUP_MAPS]
    order = sorted(range(k), key=lambda i: (ranked.index(groups[i]), i))
    colours: list[tuple] = [()] * k
    group_colours, others = {}, itertools.cycle(OTHER_MAPS)
    for group in ranked:
        members = [i for i in order if groups[i] == group]
        cmap = _cmap(GROUP_MAPS.get(group) or next(others))
        group_colours[group] = cmap(0.75)
        for i, x in zip(members, np.linspace(0.4, 0.9, len(members)) if len(members) > 1 else [0.7]):
            colours[i] = cmap(x)
    return Regions(names, groups, colours, group_colours, order, note)


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _figure(width: float, height: float):
    """A Figure drawn by an explicit Agg canvas: no pyplot state, no display, nothing to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return _data_uri(buffer.getvalue())


def _legend(ax, regions: Regions) -> None:
    """Per region up to LEGEND_REGIONS_MAX regions, else per group (one mid-shade patch each)."""
    from matplotlib.patches import Patch

    if len(regions.names) <= LEGEND_REGIONS_MAX:
        handles = [Patch(color=regions.colours[i], label=regions.label(i)) for i in regions.order]
    else:
        handles = [Patch(color=colour, label=group) for group, colour in regions.group_colours.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))


def loss_figure(runs: list[Run]) -> str:
    """Loss, output-KD and feature-KD curves, one line per run, on a log scale when all positive."""
    fig = _figure(12, 3.4)
    for ax, key in zip(fig.subplots(1, len(LOSS_KEYS)), LOSS_KEYS):
        finite = []
        for run in runs:
            steps, values = run.series(key)
            ax.plot(steps, values, lw=1, label=run.name)
            finite.extend(values[np.isfinite(values)])
        if finite and min(finite) > 0:
            ax.set_yscale("log")
        ax.set(title=key, xlabel="step")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    return _png(fig)


def heldout_level_figure(runs: list[Run]) -> str:
    """The held-out monitor's p(t)-weighted discrepancy over training, one line per run that logged it."""
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    for run in runs:
        steps, values = run.series("heldout_level")
        if steps.size:
            ax.plot(steps, values, "o-", ms=2.5, lw=1, label=run.name)
    ax.set(xlabel="step", ylabel="p(t)-weighted discrepancy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def pi_figure(run: Run) -> str:
    """The allocation pi over training as stacked areas, regions stacked group by group."""
    regions = run.regions
    steps, pi = run.series("pi")
    fig = _figure(10, 4)
    ax = fig.subplots()
    ax.stackplot(steps, pi[:, regions.order].T, colors=[regions.colours[i] for i in regions.order], lw=0)
    warmup = run.config.get("aria_warmup") or 0
    if steps.size and steps[0] < warmup < steps[-1]:
        ax.axvline(warmup, color="black", ls="--", lw=0.8)
        ax.text(warmup, 1.01, " warm-up ends", fontsize=7, transform=ax.get_xaxis_transform())
    ax.set(xlabel="step", ylabel="pi (share of drawn regions)", ylim=(0, 1))
    if steps.size > 1:
        ax.set_xlim(steps[0], steps[-1])
    _legend(ax, regions)
    return _png(fig)


def _relative(values: np.ndarray) -> np.ndarray:
    """Each row divided by its mean over the finite entries (NaN where a row has none or mean <= 0)."""
    finite = np.isfinite(values)
    sums, counts = np.where(finite, values, 0.0).sum(1), finite.sum(1)
    mean = np.divide(sums, counts, out=np.full(len(values), np.nan), where=counts > 0)
    mean[~(mean > 0)] = np.nan
    return values / mean[:, None]


def tracking_correlation(run: Run) -> tuple[float, float] | None:
    """(step, Spearman rank correlation over regions) of the tracker's estimates and the held-out
    discrepancy at the last step that logged both (regions with both values finite); None if no
    step did or fewer than 3 regions qualify. Both measure the discrepancy that switched samples
    see (timestep-normalised, t distributed as p(t)), so a good tracker ranks regions alike."""
    both = [r for r in run.records if r.get("estimates") is not None and r.get("heldout") is not None]
    if not both:
        return None
    last = both[-1]
    estimates, held = np.array(_floats(last["estimates"]), float), np.array(_floats(last["heldout"]), float)
    keep = np.isfinite(estimates) & np.isfinite(held)
    if keep.sum() < 3:
        return None
    ranks = [np.argsort(np.argsort(v[keep])) for v in (estimates, held)]  # ties (measure zero) broken by order
    return float(last["step"]), float(np.corrcoef(*ranks)[0, 1])


def estimates_figure(run: Run) -> str:
    """One panel per region: the tracker estimate and the held-out discrepancy, each relative to
    its mean over regions at that step (the two are in different units; their shapes and their
    ranking of regions are what should agree), panels sharing the y axis."""
    regions = run.regions
    steps, estimates = run.series("estimates")
    held_steps, held = run.series("heldout")
    k = len(regions.names)
    cols = min(k, max(6, int(np.ceil(np.sqrt(k)))))
    rows = -(-k // cols)
    fig = _figure(2.2 * cols, 1.7 * rows + 0.4)
    grid = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    estimates, held = _relative(estimates), _relative(held) if held.size else held
    for ax, region in zip(grid.flat, regions.order):
        ax.axhline(1, color="grey", lw=0.6)
        ax.plot(steps, estimates[:, region], color="tab:blue", lw=1, label="tracker estimate")
        if held.size:
            ax.plot(held_steps, held[:, region], "o-", color="tab:red", ms=2.5, lw=0.8, label="held-out discrepancy")
        ax.set_title(regions.label(region), fontsize=7, color=regions.group_colours[regions.groups[region]])
        ax.tick_params(labelsize=6)
    for ax in grid.flat[k:]:
        ax.axis("off")
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=7)
    return _png(fig)


def counts_figure(run: Run) -> str | None:
    """Drawn (switched) conditions per region summed over the run, bars grouped and coloured by
    group, each group labelled with its share of all drawn conditions; None if nothing was drawn."""
    regions = run.regions
    _, counts = run.series("switched_region_counts")
    totals = np.nansum(counts, axis=0)
    if not totals.sum():
        return None
    groups = list(regions.group_colours)
    x = [j + groups.index(regions.groups[i]) for j, i in enumerate(regions.order)]  # one bar's gap between groups
    fig = _figure(max(6.0, 0.12 * len(x) + 3), 3.4)
    ax = fig.subplots()
    ax.bar(x, totals[regions.order], color=[regions.colours[i] for i in regions.order])
    for group in groups:
        xs = [xi for xi, i in zip(x, regions.order) if regions.groups[i] == group]
        share = totals[[i for i in regions.order if regions.groups[i] == group]].sum() / totals.sum()
        ax.text(np.mean(xs), 1.01, f"{group}: {share:.1%}", ha="center", fontsize=8, transform=ax.get_xaxis_transform())
    if len(x) <= 40:
        ax.set_xticks(x, [regions.names[i] for i in regions.order], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set(ylabel="drawn conditions")
    return _png(fig)


def _figure_html(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _config_table(runs: list[Run]) -> str:
    def value(run: Run, key: str) -> object:  # a non-ARIA run's config holds aria_* defaults it never used
        return "-" if key in ARIA_KEYS and run.config.get("method") != "aria" else run.config.get(key, "-")

    keys = CONFIG_KEYS + (ARIA_KEYS if any(r.config.get("method") == "aria" for r in runs) else ())
    derived = {
        "logged steps": lambda r: f"{r.records[0]['step']} to {r.records[-1]['step']} ({len(r.records)} records)",
        "final loss": lambda r: next((f"{x['loss']:.4g}" for x in reversed(r.records) if x.get("loss") is not None), "-"),
        "regions": lambda r: len(r.regions.names) if r.regions else "-",
        "directory": lambda r: r.path.resolve(),
    }
    head = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    body = [f"<tr><th>{key}</th>" + "".join(f"<td>{html.escape(str(value(r, key)))}</td>" for r in runs) + "</tr>"
            for key in keys if any(key in r.config for r in runs)]
    body += [f"<tr><th>{key}</th>" + "".join(f"<td>{html.escape(str(get(r)))}</td>" for r in runs) + "</tr>"
             for key, get in derived.items()]
    notes = "".join(f"<p class=note>{html.escape(r.name)}: {html.escape(r.regions.note)}</p>"
                    for r in runs if r.regions and r.regions.note)
    return f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>{notes}"


def _eval_html(folder: Path, name: str) -> str:
    import pandas as pd

    summary = pd.read_csv(folder / "summary.csv")
    grids = "".join(_figure_html(_data_uri(p.read_bytes()), f"samples, group {p.stem.removeprefix('grid_')}: "
                                 "teacher row, then one row per student")
                    for p in sorted(folder.glob("grid_*.png")))
    return f"<h3>{html.escape(name)}</h3>" + summary.to_html(index=False, border=0, float_format="{:.4g}".format) + grids


REPORT_START = b"<!DOCTYPE html>"  # what every page starts with: an existing --out without it is not ours to replace


def build_report(runs: list[Run], eval_dirs: list[Path] = ()) -> str:
    """The report's HTML; sections whose data no run has are left out rather than shown empty.
    ``eval_dirs``: further `aria eval` folders shown in the evaluation section."""
    aria = [r for r in runs if r.is_aria() and r.regions]
    drawn = [(r, counts_figure(r)) for r in runs if r.regions and any("switched_region_counts" in x for x in r.records)]
    evaluated = [(r.path / "eval", r.name) for r in runs if (r.path / "eval" / "summary.csv").is_file()]
    evaluated += [(Path(d), str(d)) for d in eval_dirs]
    parts = ["<h2 id=runs>Runs</h2>", _config_table(runs),
             "<h2 id=losses>Loss curves</h2>",
             _figure_html(loss_figure(runs), "Mean training losses per logged interval (loss: total, out: output KD, "
                          "feat: feature KD), one line per run; gaps are intervals without a finite loss.")]
    if any("heldout_level" in x for run in runs for x in run.records):
        parts += ["<h2 id=heldout>Held-out discrepancy over training</h2>",
                  _figure_html(heldout_level_figure(runs), "The held-out monitor's teacher-student discrepancy, "
                               "p(t)-weighted, mean over its prompts (distill --heldout-every): comparable between "
                               "runs of one teacher and held-out file; not the evaluation's level, since its clean "
                               "inputs are paired images, as for a switched sample.")]
    if aria:
        parts.append("<h2 id=allocation>ARIA allocation pi over training</h2>")
        for run in aria:
            parts += [f"<h3>{html.escape(run.name)}</h3>",
                      _figure_html(pi_figure(run), "Probability pi of drawing each region for a replacing prompt, "
                                   "stacked group by group; a dashed line marks the end of the warm-up (RC's shares).")]
        parts.append("<h2 id=estimates>Tracker estimates and held-out discrepancy per region</h2>")
        for run in aria:
            if any("heldout" in x for x in run.records):
                caption = ("Per region: the tracker estimate (line) and the held-out teacher-student discrepancy "
                           "(dots), each divided by its mean over the regions at that step")
            else:
                caption = ("Per region: the tracker estimate divided by its mean over the regions at that step "
                           "(this run logged no held-out discrepancy: distill --heldout-every)")
            caption += ("; 1 is an average region, so shapes and rankings compare across panels (shared y axis); "
                        "gaps: region not observed yet.")
            correlation = tracking_correlation(run)
            if correlation is not None:
                caption += (f" Rank correlation of estimates and held-out discrepancy over regions at step "
                            f"{correlation[0]:.0f}: {correlation[1]:.2f}.")
            parts += [f"<h3>{html.escape(run.name)}</h3>", _figure_html(estimates_figure(run), caption)]
    if drawn:
        parts.append("<h2 id=drawn>Drawn conditions per region</h2>")
        for run, uri in drawn:
            parts.append(f"<h3>{html.escape(run.name)}</h3>")
            parts.append(_figure_html(uri, "Switched (replacing) conditions drawn per region, summed over the run; "
                                      "labels: each group's share of all drawn conditions.") if uri
                         else "<p class=note>no switched conditions were drawn in this run</p>")
    if evaluated:
        parts += ["<h2 id=evaluation>Evaluation (aria eval)</h2>", *(_eval_html(folder, name) for folder, name in evaluated)]
    title = "ARIA report: " + ", ".join(r.name for r in runs)
    style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:.5em 0}th,td{border:1px solid #ccc;padding:2px 8px;"
             "text-align:left}img{max-width:100%}figcaption,.note{font-size:13px;color:#444}figure{margin:1em 0}")
    return (f"{REPORT_START.decode()}<html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_report(run_paths: list[str | Path], out: Path, eval_dirs: list[Path] = ()) -> Path:
    """Build the report of the runs (and evaluation folders) and write it to the file ``out``
    atomically (a temporary file renamed into place: a failed write never leaves a truncated
    or partial report)."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ValueError(f"--out folder {out.parent} does not exist")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: give the HTML file to write")
    if out.is_file():
        with open(out, "rb") as existing:  # only its first bytes: --out may name a large file by mistake
            ours = existing.read(len(REPORT_START)) == REPORT_START
        if not ours:
            raise ValueError(f"--out {out} exists and is not a report of this command: it is replaced only if it is one")
    runs = [load_run(path, name) for path, name in zip(run_paths, distinct_names([Path(p).resolve().name for p in run_paths]))]
    missing = [d for d in eval_dirs if not (Path(d) / "summary.csv").is_file()]
    if missing:
        raise ValueError(f"--eval {missing[0]} is not an `aria eval` folder (no summary.csv)")
    page = build_report(runs, [Path(d) for d in eval_dirs])
    partial = out.with_name(out.name + ".partial")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
