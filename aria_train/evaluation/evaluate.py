"""Evaluate students against their teacher per region: discrepancy, samples, attribute accuracy.

The protocol (docs/design.md §6), identical for every model evaluated:
- Discrepancy: for every held-out prompt i and timestep t (--timesteps), the noisy input
  x_t = sqrt(abar_t) x0_i + sqrt(1 - abar_t) eps_{i,t} with noise fixed by (--seed, i, t) and
  a fixed clean x0_i: the rendered image of the prompt for the embedded world (its exact
  attributes are in the held-out table; --x0 render), else the teacher's own DDIM + CFG sample
  of the prompt from seed --seed + i (--x0 teacher). The discrepancy is the per-element mean of
  (pred_teacher - pred_student)^2 over (C, H, W), conditional predictions (no guidance);
  a region's value is its mean over its prompts of three views of the per-timestep errors
  (aria_train.evaluation.discrepancy.discrepancy_views): "discrepancy", the raw mean over the
  timesteps; "discrepancy_text", the mean over the text-sensitive ones (t >= 700), where the
  teacher's output depends on the prompt; "discrepancy_pt", weighted by RC's switch probability
  p(t), the timestep distribution of the samples a prompt sampler changes.
- Samples: DDIM + CFG (--steps, --guidance) of the first --samples-per-region held-out prompts
  of every region, held-out row i from seed --seed + i, for the teacher and every student;
  one grid PNG per group (teacher row, then one row per student, one region per column).
- Accuracy (a teacher with world.json): those samples read by the world's checker (every
  attribute right; for a glyph world also "glyph_accuracy", the glyph read as its region's, and
  the bit accuracy of its shared and region-specific cells).
- FID and CLIP score (aria_train/evaluation/image_metrics.py; torchmetrics, weights from local files only,
  never downloaded): with --fid-detector (a TorchScript feature network such as NVlabs'
  inception-2015-12-05.pt) or --fid-inception-weights (torch-fidelity's InceptionV3 weights),
  the FID of each model's samples per group against the teacher's samples of the same prompts
  and seeds (or against the PNG/JPEG images of --fid-reference DIR), with the number of samples
  that went in (FID needs >= 2 per set); with --clip-model DIR (a local CLIPModel +
  CLIPProcessor folder), the CLIP score of those samples against their prompts per region.
Groups (the world's: seen / unseen / under, or head / mid / under / unseen-head / unseen-tail; and
all): mean over regions and the worst region; with a world, also "weighted", the mean weighted by
each region's share of the world's prompt pool.

--student is a UNet folder or a distillation run directory (its newest checkpoint's
student_ema/); repeat it to evaluate several students on the very same inputs. Writes
OUT/results.json, discrepancy.csv (per model, region and timestep), accuracy.csv, summary.csv
and grid_<group>.png, atomically (built under a temporary name, then renamed).
"""
from __future__ import annotations

import json
from pathlib import Path

from aria_train.evaluation.config import EvalConfig

# accuracy.csv column -> summary metric name: every attribute right; for a glyph world the glyph
# read as its region's, and the bit accuracy of its shared and of its region-specific cells
ACCURACY_METRICS = {"all": "accuracy", "region_correct": "glyph_accuracy", "shared_bit_acc": "shared_bits",
                    "specific_bit_acc": "specific_bits"}


def _student_names(paths: list[str]) -> list[str]:
    """A short distinct name per --student: the folder name (the run's, for EMA folders inside runs)."""
    from aria_train.runs.run_dir import distinct_names

    bases = []
    for p in paths:
        path = Path(p).resolve()
        bases.append(path.parents[2].name if path.name == "student_ema" and len(path.parents) > 2 else path.name)
    return distinct_names(bases)


def _check_compatible(teacher, student, name: str) -> None:
    keys = ("in_channels", "out_channels", "sample_size", "cross_attention_dim", "addition_embed_type",
            "projection_class_embeddings_input_dim")  # the last two: SDXL's added conditioning
    different = [f"{k} {student.config[k]} != {teacher.config[k]}" for k in keys if student.config[k] != teacher.config[k]]
    if different:
        raise ValueError(f"student {name} does not fit the teacher: {', '.join(different)}")


def _load_heldout(path: str, max_per_region: int):
    from aria_train.data.pool import PromptPool
    from aria_train.evaluation.region_metrics import with_regions

    raw = PromptPool.from_file(path).table.to_pandas()
    if "region" not in raw:  # allowed (one region, as for a plain prompt list), but per-region metrics then say little
        print(f"note: {path} has no region column: its {len(raw)} prompts are evaluated as one region \"all\" "
              f"(`aria regions` writes prompts with their region ids)", flush=True)
    table = with_regions(raw)
    table["row"] = range(len(table))  # row in the file: held-out row i always uses seed + i
    if max_per_region > 0:
        table = table.groupby("region", sort=False).head(max_per_region).reset_index(drop=True)
    return table


def evaluate(config: EvalConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> dict:
    """Evaluate ``config.student`` against the teacher; write OUT (see the module docstring) and
    return the results. Bad input raises ValueError before anything is written. Each stage prints a
    line and the summary table is printed at the end; ``progress`` adds the sampling bars."""
    import pandas as pd
    import torch

    from aria_train.runs.atomic import atomic_output_dir, check_free
    from aria_train.evaluation.discrepancy import discrepancy_views, fixed_timestep_errors
    from aria_train.diffusion.loading import open_teacher
    from aria_train.console import quiet_libraries
    from aria_train.diffusion.loading import load_unet
    from aria_train.evaluation.region_metrics import region_means, summarise_groups
    from aria_train.diffusion.prompts import blinded
    from aria_train.diffusion.sampling import sample_prompts
    from aria_train.worlds import load_world_config, make_world

    from aria_train.diffusion.loading import resolve_device
    from aria_train.diffusion.sampling import default_guidance
    from aria_train.evaluation.image_metrics import ImageMetrics

    quiet_libraries()
    args = config.validate()
    check_free(out, overwrite, [args.teacher, *args.student, args.heldout, args.fid_detector,
                                args.fid_inception_weights, args.fid_reference, args.clip_model])
    device = resolve_device(args.device)
    image_metrics = ImageMetrics.from_args(args)  # bad FID / CLIP paths fail here, before any sampling
    teacher_dir = Path(args.teacher)
    loaded = open_teacher(teacher_dir)
    teacher, scheduler, prompts = loaded.unet, loaded.scheduler, loaded.prompts
    guidance = args.guidance if args.guidance is not None else default_guidance(teacher_dir)
    names = _student_names(args.student)
    students = {name: load_unet(path) for name, path in zip(names, args.student)}
    for name, student in students.items():
        _check_compatible(teacher, student, name)
    table = _load_heldout(args.heldout, args.max_per_region)
    world = make_world(load_world_config(teacher_dir / "world.json")) if (teacher_dir / "world.json").is_file() else None
    can_render = world is not None and all(a in table for a in world.attributes)
    shares = _pool_shares(world) if world is not None else None
    x0_source = ("render" if can_render else "teacher") if args.x0 == "auto" else args.x0
    if x0_source == "render" and not can_render:
        raise ValueError("--x0 render needs a teacher with world.json and attribute columns in the held-out file")

    for model in (teacher, *prompts.encoders, *students.values()):
        model.to(device)
    texts = table["text"].tolist()
    seeds = (args.seed + table["row"]).tolist()
    sampling = dict(steps=args.steps, guidance=guidance, batch_size=args.batch_size)
    if x0_source == "render":
        from aria_train.diffusion.sampling import to_model_space

        x0 = to_model_space(torch.from_numpy(world.render(table)))
    else:  # the longest silent stage for a large teacher: say it, and show its bar
        print(f"clean images: teacher samples of {len(texts)} held-out prompts, {args.steps} DDIM steps", flush=True)
        x0 = sample_prompts(teacher, dict(scheduler.config), prompts, texts, seeds, **sampling, progress=progress)
    hidden = prompts.encode(texts)
    # a student trained blind to some regions (DistillConfig.blind_regions) is evaluated as it trained
    blind = {name: ids for name, path in zip(names, args.student) if (ids := _blind_regions(path))}
    student_hidden = {name: blinded(hidden, table["region"].to_numpy(), ids, prompts.null()) for name, ids in blind.items()}
    print(f"discrepancy: {len(names)} student(s) x {len(table)} prompts x {len(args.timesteps)} timesteps", flush=True)
    errors = fixed_timestep_errors(students, scheduler, x0, hidden, seeds, args.timesteps, reference=teacher,
                                   batch_size=max(1, args.batch_size // len(args.timesteps)),
                                   model_hidden={k: v for k, v in student_hidden.items() if v is not None},
                                   progress=progress)

    disc_rows, summary_rows, results = [], [], {"discrepancy": {}, "accuracy": {}}
    for name, err in errors.items():
        views = discrepancy_views(err.numpy(), args.timesteps)
        columns = {"all": views["mean"], "text": views["text"], "pt": views["pt"],
                   **{str(t): err[:, j].numpy() for j, t in enumerate(args.timesteps)}}
        per_region = region_means(table, pd.DataFrame(columns))
        results["discrepancy"][name] = {"mean": float(err.mean()), "per_region": per_region.to_dict("records")}
        for column, metric in (("all", "discrepancy"), ("text", "discrepancy_text"), ("pt", "discrepancy_pt")):
            if per_region[column].notna().all():
                groups = summarise_groups(per_region, column, "max", shares)
                results["discrepancy"][name]["groups" if column == "all" else f"groups_{column}"] = groups.to_dict("records")
                summary_rows.append(groups.assign(model=name, metric=metric))
        long = per_region.melt(id_vars=["region", "region_name", "group", "n"], var_name="t", value_name="discrepancy")
        disc_rows.append(long.assign(model=name))

    grids, acc_rows = {}, []
    if args.samples_per_region > 0 and (teacher.config.in_channels == 3 or (teacher_dir / "vae").is_dir()):
        chosen = table.groupby("region", sort=False).head(args.samples_per_region)
        images = {}
        for name, unet in {"teacher": teacher, **students}.items():
            print(f"sampling {name}: {len(chosen)} prompts, {args.steps} DDIM steps", flush=True)
            texts_shown = chosen["text"].where(~chosen["region"].isin(blind.get(name, [])), "")
            x = sample_prompts(unet, dict(scheduler.config), prompts, texts_shown.tolist(),
                               [seeds[i] for i in chosen.index], **sampling, progress=progress)
            images[name] = _to_images(x, teacher_dir, device)
        grids = _grids(chosen, images, args.grid_regions)
        if can_render:
            from aria_train.evaluation.region_metrics import accuracy_by_region

            checker = world.checker()
            for name, imgs in images.items():
                per_region = accuracy_by_region(checker, imgs, chosen)
                results["accuracy"][name] = {"per_region": per_region.to_dict("records")}
                for column, metric in ACCURACY_METRICS.items():
                    if column in per_region and per_region[column].notna().all():
                        groups = summarise_groups(per_region, column, "min", shares)
                        results["accuracy"][name]["groups" if column == "all" else f"groups_{metric}"] = \
                            groups.to_dict("records")
                        summary_rows.append(groups.assign(model=name, metric=metric))
                acc_rows.append(per_region.assign(model=name))
        if image_metrics is not None:
            image_results, image_rows = image_metrics.evaluate(images, chosen, device)
            results.update(image_results)
            summary_rows += image_rows
    if image_metrics is not None and "image_metrics" not in results:
        raise ValueError("FID / CLIP score need decoded samples: a pixel-space teacher or a teacher folder with vae/")

    results.update(teacher=str(teacher_dir.resolve()), students=dict(zip(names, map(str, args.student))),
                   heldout=str(Path(args.heldout).resolve()), prompts=len(table), timesteps=args.timesteps,
                   x0=x0_source, seed=args.seed, samples_per_region=args.samples_per_region, steps=args.steps,
                   guidance=guidance, discrepancy_definition="mean over C,H,W of (pred_teacher - pred_student)^2")
    summary = pd.concat(summary_rows, ignore_index=True)
    with atomic_output_dir(out, overwrite) as tmp:
        (tmp / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        pd.concat(disc_rows, ignore_index=True).to_csv(tmp / "discrepancy.csv", index=False)
        summary.to_csv(tmp / "summary.csv", index=False)
        if acc_rows:
            pd.concat(acc_rows, ignore_index=True).to_csv(tmp / "accuracy.csv", index=False)
        from aria_train.diffusion.sampling import save_grid

        for group, (rows, labels) in grids.items():
            save_grid(rows, labels, tmp / f"grid_{group}.png")
    print_summary(summary)
    print(f"evaluation written to {out}")
    return results


def _blind_regions(student: str | Path) -> list[int]:
    """The blind_regions of the distillation run that ``student`` (a run directory, or a folder
    inside one) comes from; none outside a run."""
    for folder in [Path(student), *Path(student).parents][:4]:  # RUN/checkpoints/step-N/student_ema at most
        if (folder / "checkpoints").is_dir() and (folder / "config.json").is_file():
            return list(json.loads((folder / "config.json").read_text()).get("blind_regions", []))
    return []


def _pool_shares(world):
    """Each region's share of the world's prompt pool (a pandas Series indexed by region id)."""
    counts = world.tables()["pool"].groupby("region").size()
    return counts / counts.sum()


def _to_images(x, teacher_dir: Path, device):
    """uint8 images of samples in the model's space (decoded by the teacher's VAE for latents)."""
    from aria_train.diffusion.sampling import decode_latents, to_uint8_images

    if (teacher_dir / "vae").is_dir():
        from diffusers import AutoencoderKL

        x = decode_latents(AutoencoderKL.from_pretrained(teacher_dir / "vae", local_files_only=True).to(device), x)
    return to_uint8_images(x)


def _grids(chosen, images: dict, grid_regions: int) -> dict:
    """{group: (rows, labels)}: the first sampled prompt of up to ``grid_regions`` regions per group."""
    firsts = chosen.reset_index(drop=True).groupby("region", sort=True).head(1)
    out = {}
    for group, part in firsts.groupby("group", sort=False):
        rows = part.index[:grid_regions].to_numpy()
        out[group] = ([imgs[rows] for imgs in images.values()], list(images))
    return out


def print_summary(summary) -> None:
    """The summary table per group, printed."""
    for group, part in summary.groupby("group", sort=False):
        print(f"\n{group} ({int(part['regions'].iloc[0])} regions)")
        print(f"  {'model':<24} {'metric':<18} {'mean':>10} {'worst':>10}  worst region")
        for _, r in part.iterrows():
            pooled = "samples" in r and r["samples"] == r["samples"]  # FID: one value per group, no worst region
            worst = f"{'-':>10}" if pooled else f"{r['worst']:>10.4g}"
            samples = f"  ({int(r['samples'])} samples)" if pooled else ""
            print(f"  {r['model']:<24} {r['metric']:<18} {r['mean']:>10.4g} {worst}  {r['worst_region']}{samples}")
