"""Attribute accuracy of a teacher's DDIM samples of held-out prompts at several guidance scales.

Usage: python scripts/guidance_sweep.py TEACHER OUT.json [PER_REGION] [SCALES...]
Writes {scale: {group: mean all-attributes-correct accuracy}} and the per-attribute means.
"""
import json
import sys
from pathlib import Path

import torch

from aria_train.diffusion.loading import load_teacher
from aria_train.evaluation.region_metrics import accuracy_by_region, summarise_groups
from aria_train.diffusion.sampling import sample_texts, to_uint8_images
from aria_train.worlds import ATTRIBUTES, AttributeChecker, World, WorldConfig

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
per_region = int(sys.argv[3]) if len(sys.argv) > 3 else 8
scales = [float(s) for s in sys.argv[4:]] or [1.0, 2.0, 4.0, 7.5]
device = "cuda" if torch.cuda.is_available() else "cpu"
unet, scheduler, tokenizer, encoder = load_teacher(folder)
unet.to(device), encoder.to(device)
world = World(WorldConfig.load(folder / "world.json"))
heldout = world.tables()["heldout"]
chosen = heldout.groupby("region", sort=False).head(per_region)
result = {}
for g in scales:
    x = sample_texts(unet, dict(scheduler.config), tokenizer, encoder, chosen["text"].tolist(), list(chosen.index), 25, g)
    per = accuracy_by_region(AttributeChecker(world.config), to_uint8_images(x), chosen)
    result[str(g)] = {"groups": {r["group"]: r["mean"] for r in summarise_groups(per, "all", "min").to_dict("records")},
                      "worst_region": float(per["all"].min()),
                      "attributes": {a: float(per[a].mean()) for a in ATTRIBUTES}}
    print(g, json.dumps(result[str(g)]))
out.write_text(json.dumps(result, indent=2) + "\n")
