"""FID and CLIP score of generated samples through torchmetrics, with weights from local files only.

Nothing here downloads anything: every network comes from a path the user gives, and a path
that is missing or unreadable is a one-line ``ValueError``.

FID (``torchmetrics.image.fid.FrechetInceptionDistance``), the feature network from either
- a TorchScript file (``load_fid_detector``, ``aria eval --fid-detector``). Calling convention:
  ``detector(images)`` with ``images`` uint8 (N, 3, H, W) in [0, 255] at the samples' own
  resolution, returning float (N, D) features; when the module's ``forward`` has a
  ``return_features`` argument it is called as ``detector(images, return_features=True)``.
  That is how NVlabs call their ``inception-2015-12-05.pt`` (stylegan2-ada-pytorch and
  stylegan3 ``metrics/``: ``torch.jit.load``, ``detector_kwargs = dict(return_features=True)``,
  uint8 NCHW in; it resizes to 299 x 299 and normalises inside and returns the 2048 pool
  features). EDM's ``inception-2015-12-05.pkl`` is a pickle of NVlabs classes, not TorchScript,
  and is not supported; the ``.pt`` file holds the same network.
- torch-fidelity's InceptionV3 (``aria eval --fid-inception-weights``): torchmetrics' default
  feature extractor with ``feature_extractor_weights_path`` set to a local copy of
  ``weights-inception-2015-12-05-6726825d.pth``; needs the optional package torch-fidelity.
FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), means and covariances (divisor
N - 1) of the two sets' features, accumulated in float64. It needs >= 2 images per set; with
fewer images than feature dimensions the covariances are singular and FID is biased upwards.

CLIP score (``torchmetrics.multimodal.clip_score.CLIPScore``) from a local folder holding a
transformers ``CLIPModel`` and ``CLIPProcessor`` (``save_pretrained`` layout: config.json,
weights, preprocessor_config.json or processor_config.json, tokenizer files). torchmetrics
gets a callable returning (model, processor), so it never sees a hub name. The score of a set
is max(100 * mean cosine(image embedding, text embedding), 0). Two adaptations:
- transformers >= 5 returns a ``BaseModelOutputWithPooling`` from ``get_image_features`` /
  ``get_text_features``, which torchmetrics <= 1.9 cannot read (torchmetrics issue #3407);
  ``ClipFeatures`` hands torchmetrics the projected embeddings (``pooler_output``) as tensors.
- transformers >= 5's ``CLIPImageProcessor`` needs torchvision (not installed here);
  the processor is always built with the PIL backend (``CLIPImageProcessorPil`` on
  transformers >= 5, the PIL/numpy ``CLIPImageProcessor`` before), so scores do not depend
  on whether torchvision happens to be installed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from aria_train.evaluation.region_metrics import GROUP_ORDER, REGION_COLUMNS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TORCH_FIDELITY_MISSING = "--fid-inception-weights needs torch-fidelity, which is not installed (pip install torch-fidelity)"


# ---------------------------------------------------------------- FID feature networks


class TorchScriptFeatures(nn.Module):
    """A TorchScript feature network in the form torchmetrics' FID accepts as ``feature``:
    uint8 (N, 3, H, W) in, float64 (N, D) out, with ``num_features`` = D (set by ``probe``)."""

    def __init__(self, net: torch.jit.ScriptModule, name: str) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.return_features = "return_features" in [a.name for a in net.forward.schema.arguments]
        self.num_features: int | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        try:
            out = self.net(images, return_features=True) if self.return_features else self.net(images)
        except Exception as err:  # noqa: BLE001 - any failure inside a user's network, as one line
            first = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            raise ValueError(f"FID detector {self.name} failed on uint8 {tuple(images.shape)} images: {first}") from None
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != images.shape[0]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"FID detector {self.name} must return (N, D) features for N images, got {got}")
        return out.double()

    def probe(self, images: torch.Tensor) -> None:
        """Run once on ``images`` (uint8 NCHW) to learn D (torchmetrics reads ``num_features``)."""
        with torch.no_grad():
            self.num_features = int(self(images).shape[1])


def _existing_file(path: str | Path, option: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{option} {path}: file not found")
    return path


def load_fid_detector(path: str | Path, device: str | torch.device = "cpu") -> TorchScriptFeatures:
    """The TorchScript feature network at ``path`` (torch.jit.load, eval mode, on ``device``)."""
    path = _existing_file(path, "--fid-detector")
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; NVlabs ship their detector in it
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location=device)
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError with a long message
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"--fid-detector {path}: not a TorchScript file ({first})") from None
    return TorchScriptFeatures(net.eval(), str(path))


def check_torch_fidelity_weights(path: str | Path) -> Path:
    """``path`` if it is a file and torch-fidelity is importable, else a one-line ValueError."""
    path = _existing_file(path, "--fid-inception-weights")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise ValueError(TORCH_FIDELITY_MISSING) from None
    return path


@dataclass
class FidSetup:
    """One FID metric for a whole evaluation: a TorchScript detector or torch-fidelity weights."""

    detector: TorchScriptFeatures | None = None
    inception_weights: Path | None = None
    device: str | torch.device = "cpu"
    batch_size: int = 64
    _metric: object | None = None

    @property
    def name(self) -> str:
        """The network's file as given."""
        return str(self.inception_weights) if self.detector is None else self.detector.name

    def metric(self, example: torch.Tensor):
        """The FrechetInceptionDistance (built on first use; ``example``: uint8 NCHW images)."""
        if self._metric is None:
            from torchmetrics.image.fid import FrechetInceptionDistance

            if self.detector is not None:
                self.detector.probe(example.to(self.device))
                fid = FrechetInceptionDistance(feature=self.detector, reset_real_features=False)
            else:
                fid = FrechetInceptionDistance(feature=2048, reset_real_features=False,
                                               feature_extractor_weights_path=str(self.inception_weights))
            self._metric = fid.to(self.device)
        return self._metric


# ---------------------------------------------------------------- FID per group


def nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) numpy -> uint8 (N, 3, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def group_masks(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """{group: boolean row mask} in the order of the summaries (seen, unseen, under, others, all)."""
    present = set(table["group"])
    groups = [g for g in GROUP_ORDER if g in present] + sorted(present - set(GROUP_ORDER))
    masks = {g: (table["group"] == g).to_numpy() for g in groups}
    if len(groups) > 1:
        masks["all"] = np.ones(len(table), dtype=bool)
    return masks


def reference_files(folder: str | Path) -> list[Path]:
    """The PNG/JPEG files directly inside ``folder`` (sorted), at least 2, else a ValueError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--fid-reference {folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"--fid-reference {folder}: FID needs >= 2 PNG/JPEG images, found {len(files)}")
    return files


def _file_batches(files: Sequence[Path], batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 NCHW batches of the RGB images in ``files``, consecutive images of one size per batch."""
    from PIL import Image

    batch: list[np.ndarray] = []
    for path in files:
        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except OSError as err:
            raise ValueError(f"--fid-reference: cannot read {path}: {err}") from None
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            yield nchw(np.stack(batch))
            batch = []
        batch.append(image)
    if batch:
        yield nchw(np.stack(batch))


def _array_batches(images: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(images), batch_size):
        yield nchw(images[i : i + batch_size])


def _feed(metric, batches: Iterator[torch.Tensor], real: bool, device) -> int:
    n = 0
    for batch in batches:
        metric.update(batch.to(device), real=real)
        n += batch.shape[0]
    return n


def _reset_all(metric) -> None:
    """Forget the real features too (the metric is built with ``reset_real_features=False``)."""
    metric.reset_real_features = True
    metric.reset()
    metric.reset_real_features = False


def fid_by_group(setup: FidSetup, images: dict[str, np.ndarray], table: pd.DataFrame,
                 reference: Sequence[Path] | None = None) -> pd.DataFrame:
    """FID of every model's samples per group, against the teacher's samples of the same prompts
    and seeds of that group (``reference`` None; ``images["teacher"]``; the teacher itself is
    skipped), or against the images in the files ``reference`` (every model, every group).

    ``images``: {model: uint8 (N, H, W, 3)}, row i the sample of ``table`` row i. Returns one row
    per (model, group): model, group, regions, samples, reference_samples, fid (NaN when either
    set has fewer than 2 images).
    """
    first = next(iter(images.values()))
    metric = setup.metric(nchw(first[:2]))
    models = [m for m in images if reference is not None or m != "teacher"]
    n_reference = 0
    if reference is not None:
        _reset_all(metric)
        n_reference = _feed(metric, _file_batches(reference, setup.batch_size), True, setup.device)
    rows = []
    for group, mask in group_masks(table).items():
        n = int(mask.sum())
        if reference is None:
            _reset_all(metric)
            n_reference = _feed(metric, _array_batches(images["teacher"][mask], setup.batch_size), True, setup.device) if n >= 2 else n
        for model in models:
            value = float("nan")
            if n >= 2 and n_reference >= 2:
                _feed(metric, _array_batches(images[model][mask], setup.batch_size), False, setup.device)
                value = float(metric.compute())
                metric.reset()  # fake features only
            rows.append({"model": model, "group": group, "regions": int(table.loc[mask, "region"].nunique()),
                         "samples": n, "reference_samples": n_reference, "fid": value})
    return pd.DataFrame(rows)


def fid_summary_rows(fid: pd.DataFrame) -> pd.DataFrame:
    """FID rows in the layout of evaluate's summary.csv (FID is pooled over a group: no worst region)."""
    return pd.DataFrame({"group": fid["group"], "regions": fid["regions"], "mean": fid["fid"], "worst": np.nan,
                         "worst_region": "", "model": fid["model"], "metric": "fid", "samples": fid["samples"]})


# ---------------------------------------------------------------- CLIP score


class ClipFeatures(nn.Module):
    """A CLIPModel whose ``get_image_features`` / ``get_text_features`` return the projected
    embeddings as tensors (transformers >= 5 wraps them in a BaseModelOutputWithPooling)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def config(self):
        return self.model.config

    @staticmethod
    def _tensor(out) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._tensor(self.model.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._tensor(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def _pil_image_processor_class():
    try:
        from transformers import CLIPImageProcessorPil  # transformers >= 5: the backend without torchvision

        return CLIPImageProcessorPil
    except ImportError:
        from transformers import CLIPImageProcessor  # transformers 4: the slow PIL/numpy processor

        return CLIPImageProcessor


def load_clip(folder: str | Path):
    """(ClipFeatures, CLIPProcessor) from a local folder, offline (``local_files_only``)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"--clip-model {folder}: not a folder with a CLIPModel (config.json not found)")
    from transformers import AutoTokenizer, CLIPModel, CLIPProcessor

    try:
        model = CLIPModel.from_pretrained(folder, local_files_only=True)
        image_processor = _pil_image_processor_class().from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"--clip-model {folder}: cannot load a CLIPModel and CLIPProcessor: {first}") from None
    model.eval().requires_grad_(False)
    return ClipFeatures(model), CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def clip_metric(folder: str | Path, device: str | torch.device = "cpu"):
    """torchmetrics' CLIPScore over the CLIP model in the local ``folder``."""
    from torchmetrics.multimodal.clip_score import CLIPScore

    model, processor = load_clip(folder)
    return CLIPScore(model_name_or_path=lambda: (model, processor)).to(device)


def clip_score(metric, images: np.ndarray, texts: Sequence[str], batch_size: int = 64) -> float:
    """CLIP score of uint8 (N, H, W, 3) ``images`` against their ``texts`` (one set, the metric reset first)."""
    metric.reset()
    device = metric.score.device
    for i in range(0, len(images), batch_size):
        metric.update(nchw(images[i : i + batch_size]).to(device), list(texts[i : i + batch_size]))
    return float(metric.compute())


def clip_by_region(metric, images: np.ndarray, table: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
    """CLIP score per region of ``images`` (row i the sample of ``table`` row i, its text the
    prompt): region, region_name, group, n, clip_score; sorted by region id."""
    table = table.reset_index(drop=True)
    rows = []
    for (region, name, group), part in table.groupby(REGION_COLUMNS, sort=True):
        score = clip_score(metric, images[part.index.to_numpy()], part["text"].tolist(), batch_size)
        rows.append({"region": region, "region_name": name, "group": group, "n": len(part), "clip_score": score})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- `aria eval`


def _none_for_nan(records: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in records]


@dataclass
class ImageMetrics:
    """The FID / CLIP-score part of `aria eval`: paths checked and networks loaded (on the CPU)
    by ``from_args`` before anything is sampled; ``evaluate`` runs them on the samples."""

    fid: FidSetup | None = None
    reference: list[Path] | None = None
    clip_folder: Path | None = None
    clip: object | None = None
    batch_size: int = 64

    @classmethod
    def from_args(cls, args) -> "ImageMetrics | None":
        detector, weights = getattr(args, "fid_detector", None), getattr(args, "fid_inception_weights", None)
        reference, clip_folder = getattr(args, "fid_reference", None), getattr(args, "clip_model", None)
        if detector and weights:
            raise ValueError("give --fid-detector or --fid-inception-weights, not both")
        if reference and not (detector or weights):
            raise ValueError("--fid-reference needs --fid-detector or --fid-inception-weights")
        if not (detector or weights or clip_folder):
            return None
        if args.samples_per_region < 1:
            raise ValueError("FID and CLIP score are computed on the samples: --samples-per-region must be >= 1")
        fid = None
        if detector:
            fid = FidSetup(detector=load_fid_detector(detector), batch_size=args.batch_size)
        elif weights:
            fid = FidSetup(inception_weights=check_torch_fidelity_weights(weights), batch_size=args.batch_size)
        return cls(fid=fid, reference=reference_files(reference) if reference else None,
                   clip_folder=Path(clip_folder) if clip_folder else None,
                   clip=clip_metric(clip_folder) if clip_folder else None, batch_size=args.batch_size)

    def evaluate(self, images: dict[str, np.ndarray], chosen: pd.DataFrame, device) -> tuple[dict, list[pd.DataFrame]]:
        """({results.json entries}, [summary rows]) for ``images`` {model: uint8 (N, H, W, 3)} of ``chosen``."""
        from aria_train.evaluation.region_metrics import summarise_groups

        chosen = chosen.reset_index(drop=True)
        results: dict = {"image_metrics": self.settings()}
        rows: list[pd.DataFrame] = []
        if self.fid is not None:
            self.fid.device = device
            if self.fid.detector is not None:
                self.fid.detector.to(device)
            table = fid_by_group(self.fid, images, chosen, self.reference)
            results["fid"] = {m: {"groups": _none_for_nan(part.drop(columns="model").to_dict("records"))}
                              for m, part in table.groupby("model", sort=False)}
            rows.append(fid_summary_rows(table))
        if self.clip is not None:
            self.clip.to(device)
            results["clip_score"] = {}
            for model, imgs in images.items():
                per_region = clip_by_region(self.clip, imgs, chosen, self.batch_size)
                groups = summarise_groups(per_region, "clip_score", "min")
                results["clip_score"][model] = {"groups": groups.to_dict("records"),
                                                "per_region": per_region.to_dict("records")}
                rows.append(groups.assign(model=model, metric="clip_score"))
        return results, rows

    def settings(self) -> dict:
        fid_reference = None
        if self.fid is not None:
            fid_reference = "teacher samples of the same prompts and seeds" if self.reference is None else \
                f"{len(self.reference)} images in {self.reference[0].parent.resolve()}"
        return {
            "fid_network": None if self.fid is None else str(Path(self.fid.name).resolve()),
            "fid_reference": fid_reference,
            "fid_definition": "||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) of the features of all samples of "
                              "a group (torchmetrics FrechetInceptionDistance); null when a set has < 2 images",
            "clip_model": None if self.clip_folder is None else str(self.clip_folder.resolve()),
            "clip_definition": "per region max(100 * mean cosine(image, prompt) of CLIP embeddings, 0) "
                               "(torchmetrics CLIPScore); groups: mean and worst (lowest) region",
        }
