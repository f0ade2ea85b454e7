"""EvalConfig: the options of one evaluation (``aria eval``), one dataclass like the distillation's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aria_train.options import Options, check_seed, check_types, option


@dataclass
class EvalConfig(Options):
    """What ``evaluate`` compares and how; every path is local, nothing is downloaded."""

    WHAT = "evaluation config"

    teacher: str = option("", "path", "teacher model folder", required=True)
    student: list[str] = option(unit="path", help="student UNet folder or distillation run directory; repeat --student "
                                "to evaluate several on the very same inputs", default_factory=list, required=True)
    heldout: str = option("", "path", "held-out prompts (txt/jsonl/csv/parquet/arrow; region, region_name, group "
                          "and, for the world, attribute columns)", required=True)
    timesteps: list[int] = option(unit="DDPM timesteps", help="where the discrepancy is measured",
                                  default_factory=lambda: [100, 300, 500, 700, 900, 980])
    x0: Literal["auto", "render", "teacher"] = option("auto", "choice", "clean images of the discrepancy: rendered "
                                                      "(world) or teacher samples; auto: render when the teacher has "
                                                      "world.json and the held-out file attribute columns")
    max_per_region: int = option(0, "prompts", "held-out prompts per region in the discrepancy, 0 = all")
    samples_per_region: int = option(8, "prompts", "sampled held-out prompts per region for grids and accuracy, 0 = none")
    grid_regions: int = option(12, "regions", "columns per group grid")
    steps: int = option(25, "DDIM steps", "of the samples")
    guidance: float | None = option(None, "scale", "classifier-free guidance of the samples (default: the teacher "
                                    "folder's sampling.json, else RC's 7.5)")
    seed: int = option(0, "integer", "base seed of noise and samples")
    batch_size: int = option(64, "prompts", "per sampling batch; the discrepancy passes hold batch-size / "
                             "len(timesteps) prompts")
    device: str | None = option(None, "torch device", "cuda, cuda:N or cpu (default: cuda if available, else cpu)")
    fid_detector: str | None = option(None, "path", "TorchScript FID feature network, e.g. NVlabs' "
                                      "inception-2015-12-05.pt: uint8 (N, 3, H, W) images in [0, 255] in, (N, D) "
                                      "features out. FID per group of the sampled prompts (default: no FID)")
    fid_inception_weights: str | None = option(None, "path", "instead of --fid-detector: torch-fidelity's InceptionV3 "
                                               "weights file (needs the torch-fidelity package)")
    fid_reference: str | None = option(None, "path", "folder of PNG/JPEG reference images for FID (default: the "
                                       "teacher's samples of the same prompts and seeds)")
    clip_model: str | None = option(None, "path", "local folder of a transformers CLIPModel + CLIPProcessor; CLIP "
                                    "score 0..100 of every model's samples per region (default: none)")

    def validate(self) -> "EvalConfig":
        check_types(self)
        for name in ("teacher", "heldout"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required")
        if not self.student:
            raise ValueError("--student is required (repeat it for several students)")
        for name in ("steps", "batch_size", "grid_regions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_per_region", "samples_per_region"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.guidance is not None and self.guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")
        check_seed("seed", self.seed)
        if not self.timesteps or min(self.timesteps) < 0:
            raise ValueError(f"timesteps must be >= 0, got {self.timesteps}")
        return self
