"""Checkpoints of a distillation run, written atomically, kept to a retention limit.

    RUN/checkpoints/step-XXXXXXX/
        accelerator/         accelerator.save_state: student (+ feature projections), AdamW,
                             global RNG states of every process
        student/             the student, save_pretrained (a loadable UNet2DConditionModel)
        student_ema/         the EMA of the student, EMAModel.save_pretrained (its step count
                             and decay in the config)
        rng-rank{R}.json     process R's explicit generators (numpy data/condition draws, torch
                             noise), so every rank resumes its exact stream, and R's own copy of
                             the sampler state (equal on every rank; kept to check that it is)
        trainer_state.json   step, sampler state, non-finite counter, metrics position, config
                             (written last)

A student trained in a group (aria_train.distill.group; one process, no accelerator) has
group_optimizer.pt -- its slices of the group's AdamW state -- in place of accelerator/.

Atomicity: everything is written into ``.tmp-step-XXXXXXX`` beside the final folder, flushed to
disk (fsync of every file and folder), then renamed into place in one ``os.replace``. A write
killed midway leaves only the temporary folder, which loaders ignore and the next save deletes,
so the previous checkpoint stays the latest loadable one.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from aria_train.console import first_line
from aria_train.runs.atomic import replace_folder

STEP_DIR = re.compile(r"step-(\d{7})")
TRAINER_STATE = "trainer_state.json"
ACCELERATOR_DIR = "accelerator"
EMA_DIR = "student_ema"
STUDENT_DIR = "student"
GROUP_OPTIMIZER = "group_optimizer.pt"  # in place of ACCELERATOR_DIR in the checkpoints of a student group
# EMAModel.state_dict() entries besides the weights; save_pretrained puts them in config.json
EMA_COUNTERS = ("decay", "min_decay", "optimization_step", "update_after_step", "use_ema_warmup", "inv_gamma", "power")


def _encode(value: Any) -> Any:
    """JSON-ready copy of nested state; numpy arrays become {"__ndarray__": list, "dtype": str}
    (exact for integer and float64 values: JSON floats round-trip through repr)."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(_encode(obj), f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def read_json(path: Path) -> Any:
    try:
        return _decode(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None


def generator_state(rng: np.random.Generator, noise: torch.Generator) -> dict:
    """The explicit generators of one process, as JSON-ready state."""
    return {"numpy": rng.bit_generator.state,
            "torch": base64.b64encode(noise.get_state().numpy().tobytes()).decode("ascii")}


def restore_generators(state: dict, rng: np.random.Generator, noise: torch.Generator) -> None:
    """Set both generators from ``generator_state``'s output (ValueError if it is corrupt)."""
    try:
        rng.bit_generator.state = state["numpy"]
        noise.set_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"], validate=True)), dtype=torch.uint8))
    except (KeyError, TypeError, ValueError, RuntimeError, binascii.Error) as err:
        raise ValueError(f"corrupt generator state: {first_line(err)}") from None


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under root (and root) to disk."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def step_dir_name(step: int) -> str:
    return f"step-{step:07d}"


def list_checkpoints(checkpoints: Path) -> list[Path]:
    """Complete checkpoints under ``checkpoints``, oldest first."""
    if not checkpoints.is_dir():
        return []
    found = [p for p in checkpoints.iterdir() if STEP_DIR.fullmatch(p.name) and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.fullmatch(p.name).group(1)))


def resolve_resume(value: str, checkpoints: Path) -> Path:
    """``latest`` -> the newest complete checkpoint under ``checkpoints``; else the given folder."""
    if value == "latest":
        found = list_checkpoints(checkpoints)
        if not found:
            raise ValueError(f"--resume latest: no checkpoint in {checkpoints}")
        return found[-1]
    return Path(value)


def read_trainer_state(path: Path, keys: tuple[str, ...]) -> dict:
    """A checkpoint's trainer state (ValueError unless ``path`` is a checkpoint whose state
    holds ``keys``)."""
    if not path.is_dir():
        raise ValueError(f"checkpoint {path} not found")
    if not (path / TRAINER_STATE).is_file():
        raise ValueError(f"{path} is not a checkpoint (no {TRAINER_STATE})")
    state = read_json(path / TRAINER_STATE)
    if not isinstance(state, dict) or not set(keys) <= set(state):
        raise ValueError(f"{path / TRAINER_STATE} is corrupt: expected the keys {', '.join(sorted(keys))}")
    return state


def check_complete(path: Path, num_processes: int) -> None:
    """ValueError unless ``path`` holds every part a run on ``num_processes`` processes loads."""
    if (path / GROUP_OPTIMIZER).exists():
        raise ValueError(f"{path} was written by a student group (aria experiment --group): continue it with the "
                         f"same experiment command")
    needed = [ACCELERATOR_DIR, EMA_DIR, *(f"rng-rank{r}.json" for r in range(num_processes))]
    missing = [name for name in needed if not (path / name).exists()]
    if missing:
        raise ValueError(f"{path} is not a complete checkpoint for {num_processes} process(es): missing {', '.join(missing)}")


def save_checkpoint(
    accelerator,
    checkpoints: Path,
    step: int,
    student: torch.nn.Module,
    ema,
    trainer_state: dict,
    generators: dict,
    limit: int,
) -> Path:
    """Write checkpoint ``step`` atomically (all processes call this), then prune to ``limit``.

    ``student`` is the unwrapped student, ``ema`` a diffusers EMAModel, ``trainer_state`` the
    main process's JSON state, ``generators`` this process's ``generator_state``.
    """
    final = checkpoints / step_dir_name(step)
    tmp = checkpoints / f".tmp-{final.name}"
    main = accelerator.is_main_process
    if main:
        for debris in checkpoints.glob(".tmp-*"):
            shutil.rmtree(debris)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / ACCELERATOR_DIR))
    write_json(tmp / f"rng-rank{accelerator.process_index}.json", generators)
    if main:
        student.save_pretrained(tmp / STUDENT_DIR)
        with torch.random.fork_rng(devices=[]):  # it initialises a scratch model: keep the global RNG
            ema.save_pretrained(tmp / EMA_DIR)
        write_json(tmp / TRAINER_STATE, trainer_state)
    accelerator.wait_for_everyone()
    if main:
        _commit(tmp, final, limit)
    accelerator.wait_for_everyone()
    return final


def _commit(tmp: Path, final: Path, limit: int) -> None:
    """Move the written ``tmp`` folder into place as ``final``, then prune to ``limit``."""
    _move_into_place(tmp, final)
    _prune(final.parent, limit)


def _move_into_place(tmp: Path, final: Path) -> None:
    """Flush the written ``tmp`` folder and rename it to ``final`` in one step."""
    _fsync_tree(tmp)
    replace_folder(tmp, final)  # an existing one: a step saved again (resumed from an older checkpoint)
    _fsync_dir(final.parent)


def _prune(checkpoints: Path, limit: int) -> None:
    """Delete all but the newest ``limit`` checkpoints (0: keep all)."""
    if limit > 0:
        for stale in list_checkpoints(checkpoints)[:-limit]:
            shutil.rmtree(stale)


def stage_group_checkpoint(checkpoints: Path, step: int, student: torch.nn.Module, ema, trainer_state: dict,
                           generators: dict, optimizer_state: dict) -> tuple[Path, Path]:
    """Write checkpoint ``step`` of one student of a group (aria_train.distill.group) into its
    temporary folder: as ``save_checkpoint``'s, with GROUP_OPTIMIZER (this student's slices of the
    group's AdamW state, by parameter name) in place of the accelerator's folder. Returns
    (temporary, final) for ``commit_group_checkpoints``."""
    final = checkpoints / step_dir_name(step)
    tmp = checkpoints / f".tmp-{final.name}"
    for debris in checkpoints.glob(".tmp-*"):
        shutil.rmtree(debris)
    tmp.mkdir(parents=True)
    write_json(tmp / "rng-rank0.json", generators)
    torch.save(optimizer_state, tmp / GROUP_OPTIMIZER)
    student.save_pretrained(tmp / STUDENT_DIR)
    with torch.random.fork_rng(devices=[]):
        ema.save_pretrained(tmp / EMA_DIR)
    write_json(tmp / TRAINER_STATE, trainer_state)
    return tmp, final


def commit_group_checkpoints(staged: list[tuple[Path, Path]], limit: int) -> None:
    """Move every staged checkpoint of a group into place, then prune each run to ``limit``. No
    run loses a checkpoint before every run has the new one, so a group killed midway still has a
    step all its runs hold (the one it resumes from)."""
    for tmp, final in staged:
        _move_into_place(tmp, final)
    for _, final in staged:
        _prune(final.parent, limit)


def load_group_checkpoint(path: Path, ema, parameter_names: list[str], sampler_state: dict,
                          rng: np.random.Generator, noise: torch.Generator) -> tuple[dict, dict]:
    """Restore one group student's EMA and generators from ``path`` (``stage_group_checkpoint``'s);
    returns (its weights by parameter name, its optimizer state)."""
    from safetensors.torch import load_file

    missing = [name for name in (GROUP_OPTIMIZER, STUDENT_DIR, EMA_DIR, "rng-rank0.json") if not (path / name).exists()]
    if missing:
        raise ValueError(f"{path} is not a complete checkpoint of a student group: missing {', '.join(missing)}")
    generators = read_json(path / "rng-rank0.json")
    if not isinstance(generators, dict) or not {"numpy", "torch", "sampler"} <= set(generators):
        raise ValueError(f"{path}/rng-rank0.json is corrupt")
    if _encode(generators["sampler"]) != _encode(sampler_state):
        raise ValueError(f"{path}: the sampler state of rng-rank0.json differs from the trainer state's")
    try:
        files = sorted((path / STUDENT_DIR).glob("*.safetensors"))
        weights = load_file(files[0]) if len(files) == 1 else {}
        optimizer_state = torch.load(path / GROUP_OPTIMIZER, map_location="cpu", weights_only=True)
        _load_ema(path / EMA_DIR, ema, parameter_names)
    except Exception as err:  # torch/safetensors raise many types for a bad file
        raise ValueError(f"cannot load checkpoint {path}: {first_line(err)}") from None
    if sorted(weights) != sorted(parameter_names):
        raise ValueError(f"{path / STUDENT_DIR} does not match the student's architecture")
    try:
        restore_generators(generators, rng, noise)
    except ValueError as err:
        raise ValueError(f"{path}/rng-rank0.json: {err}") from None
    return weights, optimizer_state


def _load_ema(folder: Path, ema, names: list[str]) -> None:
    """Fill ``ema`` (an EMAModel over parameters called ``names``, in order) from the folder
    EMAModel.save_pretrained wrote: weights by name, EMA counters from its config."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1 or not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not an EMA folder (one safetensors file and config.json)")
    weights = load_file(files[0])
    config = read_json(folder / "config.json")
    wrong = [n for n, p in zip(names, ema.shadow_params) if n not in weights or weights[n].shape != p.shape]
    if wrong or len(weights) != len(names):
        raise ValueError(f"{folder} does not match the student's architecture (first mismatch: "
                         f"{wrong[0] if wrong else sorted(set(weights) - set(names))[0]})")
    counters = {k: config[k] for k in EMA_COUNTERS if k in config}
    shadow = [weights[n].to(p.device, p.dtype) for n, p in zip(names, ema.shadow_params)]
    ema.load_state_dict({**counters, "shadow_params": shadow})


def load_checkpoint(accelerator, path: Path, ema, parameter_names: list[str], sampler_state: dict,
                    rng: np.random.Generator, noise: torch.Generator) -> None:
    """Restore accelerator state, the EMA (over the student parameters ``parameter_names``) and
    this process's generators ``rng`` and ``noise`` from ``path``.

    Every rank saved its own copy of the sampler state; it must equal ``sampler_state`` (the
    trainer state's), else the ranks had diverged and resuming would not be exact."""
    check_complete(path, accelerator.num_processes)
    generators = read_json(path / f"rng-rank{accelerator.process_index}.json")
    if not isinstance(generators, dict) or not {"numpy", "torch", "sampler"} <= set(generators):
        raise ValueError(f"{path}/rng-rank{accelerator.process_index}.json is corrupt")
    if _encode(generators["sampler"]) != _encode(sampler_state):
        raise ValueError(f"{path}: rank {accelerator.process_index}'s sampler state differs from the trainer state's")
    try:
        accelerator.load_state(str(path / ACCELERATOR_DIR))
        _load_ema(path / EMA_DIR, ema, parameter_names)
    except Exception as err:  # torch/safetensors/accelerate raise many types for a bad file
        raise ValueError(f"cannot load checkpoint {path}: {first_line(err)}") from None
    try:
        restore_generators(generators, rng, noise)
    except ValueError as err:
        raise ValueError(f"{path}/rng-rank{accelerator.process_index}.json: {err}") from None
