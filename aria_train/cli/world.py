"""Write a world's prompt tables, its config and a contact sheet of its regions.

Writes to --out: pool.parquet, paired.parquet, heldout.parquet (columns text, region,
region_name, group and the world's attributes: shape, colour, size, position, background for the
default world; word, colour, position, background for a glyph world), world.json (its config;
give it back with --config to rebuild the same world) and contact_sheet.png (rendered held-out
prompts, one cell per region, titled with its group). It prints the split and the checker's
accuracy on clean and corrupted renders.

--out must be new or empty, or hold this very world (a world.json equal to the one to write, and
only these files): it is then written again, identically. Another world, or any other folder,
is replaced only with --overwrite. The folder is built under a temporary name and renamed into
place, so a failed or refused run leaves --out as it was.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: created; an existing one must be empty or hold the same world")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder (default: refuse)")
    parser.add_argument("--config", type=Path, default=None,
                        help="world config JSON, either family (\"kind\": \"glyph\" for a glyph world; default: "
                        "%(default)s, the built-in default world)")
    parser.add_argument("--seed", type=int, default=None,
                        help="override the config's seed for the prompt tables (default: %(default)s, keep it)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="override the config's image side in pixels (default: %(default)s, keep it; built-in 32)")
    parser.add_argument("--sheet-per-region", type=int, default=4,
                        help="images per region on the contact sheet (default: %(default)s)")
    parser.add_argument("--check", type=int, default=1000,
                        help="random renders on which to measure the attribute checker, 0 to skip (default: %(default)s)")


OUTPUTS = ("pool.parquet", "paired.parquet", "heldout.parquet", "world.json", "contact_sheet.png")


def same_world(out: Path, config) -> bool:
    """True if ``out`` holds nothing but a world's files, with ``config`` as its world.json (read
    as a config, so a world.json written before a field with a default existed still matches)."""
    from aria_train.worlds import load_world_config

    if not out.is_dir() or not (out / "world.json").is_file():
        return False
    if any(p.name not in OUTPUTS for p in out.iterdir()):
        return False
    try:
        return load_world_config(out / "world.json") == config
    except (OSError, UnicodeDecodeError, ValueError):
        return False


# Title colour per group, in the order the summary prints groups (both families' groups).
GROUP_COLOURS = {"seen": "black", "unseen": "tab:red", "head": "black", "mid": "dimgray", "under": "tab:blue",
                 "unseen-head": "tab:orange", "unseen-tail": "tab:red"}


def sheet_columns(world) -> int:
    """Regions per contact-sheet row: the last region attribute's values, or the glyph's second parts."""
    from aria_train.worlds import GlyphWorld

    if isinstance(world, GlyphWorld):
        return world.config.second_parts
    return len(world.config.values(world.config.region_attributes[-1]))


def contact_sheet(world, tables: dict, per_region: int, path: Path) -> None:
    """PNG with one cell per region: ``per_region`` renders of its first held-out prompts."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heldout = tables["heldout"].groupby("region", sort=True).head(per_region)
    images = world.render(heldout)
    cols = sheet_columns(world)
    rows = -(-world.num_regions // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * per_region * 0.55 + 0.5, rows * 0.8 + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for region in range(world.num_regions):
        chosen = images[(heldout["region"] == region).to_numpy()]
        # A dark frame round each image keeps white backgrounds apart from the page.
        framed = np.pad(chosen, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=64)
        gap = np.full((len(chosen), framed.shape[1], 2, 3), 255, np.uint8)
        strip = np.concatenate(np.concatenate([framed, gap], axis=2), axis=1)[:, :-2]
        ax = axes.flat[region]
        ax.imshow(strip, interpolation="nearest")
        group = world.region_groups[region]
        ax.set_title(f"{world.region_names[region]} ({group})", fontsize=7,
                     color=GROUP_COLOURS[group])
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    from aria_train.runs.atomic import atomic_output_dir, check_free
    from aria_train.worlds import WorldConfig, corrupt, load_world_config, make_world

    if args.sheet_per_region < 1 or args.check < 0:
        raise ValueError("--sheet-per-region must be >= 1 and --check >= 0")
    data = (load_world_config(args.config) if args.config else WorldConfig()).to_dict()
    data.update({k: v for k, v in (("seed", args.seed), ("image_size", args.image_size)) if v is not None})
    config = load_world_config(data)
    again = same_world(args.out, config)
    if not again:
        try:
            check_free(args.out, args.overwrite)
        except ValueError:
            if not args.out.exists():
                raise  # it cannot be written: check_free's own message
            what = ("holds another world" if (args.out / "world.json").is_file() else
                    "holds other files" if args.out.is_dir() else "is not a folder")
            raise ValueError(f"output {args.out} already exists and {what} (pass --overwrite to replace it, "
                             "or choose another --out)") from None
    world = make_world(config)
    tables = world.tables()
    with atomic_output_dir(args.out, overwrite=args.overwrite or again) as tmp:
        for name, table in tables.items():
            table.to_parquet(tmp / f"{name}.parquet", index=False)
        config.save(tmp / "world.json")
        contact_sheet(world, tables, args.sheet_per_region, tmp / "contact_sheet.png")

    groups = [g for g in GROUP_COLOURS if g in world.region_groups]
    print(f"world: {world.num_regions} regions (" + ", ".join(f"{world.region_groups.count(g)} {g}" for g in groups)
          + f"), {world.num_prompts():,} distinct prompts, "
          f"vocabulary {len(world.vocabulary())} words, longest prompt {world.max_words()} words")
    for name, table in tables.items():
        sizes = table.groupby("group").size().to_dict()
        print(f"{name}: {len(table)} prompts " + ", ".join(f"{g} {sizes.get(g, 0)}" for g in groups))
    if args.check:
        rng = np.random.default_rng(config.seed)
        attrs = world.sample_attributes(args.check, rng)
        images = world.render(attrs)
        checker = world.checker()
        for label, batch in (("clean", images), ("noise 0.1 + blur 0.6 px", corrupt(images, 0.1, 0.6, rng))):
            acc = checker.accuracy(batch, attrs)
            print(f"checker on {args.check} {label} renders: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    print(f"wrote {args.out}/{{pool,paired,heldout}}.parquet, world.json, contact_sheet.png")
    return 0
