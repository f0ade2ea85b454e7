"""Prompts -> the UNet's conditioning, for one CLIP encoder (Stable Diffusion v1/v2, the embedded
worlds) and for two (Stable Diffusion XL), and the one way every caller hands it to a UNet.

A *conditioning* of N prompts is either

* a tensor (N, L, D): the cross-attention context alone (SD v1/v2). SD keeps the plain tensors
  it always had, so its caches, batches and predictions are bitwise what they were; or
* a `TextConditioning` (SDXL): the context (N, L, D1 + D2), the concatenated penultimate hidden
  states of both encoders, plus the two inputs of SDXL's added embedding ("text_time"): the
  second encoder's pooled projection `text_embeds` (N, P) and the six size/crop `time_ids`
  (N, 6) = (original height, width, crop top, left, target height, width).

`unet_inputs(conditioning, dtype)` turns either into the UNet's keyword arguments; every UNet
call of the trainer, the caches, sampling and evaluation goes through it. `TextConditioning`
answers the few tensor operations those callers use on a context (len, indexing and index
assignment, ``to``, ``float``, ``expand``, ``repeat_interleave``, ``clone``), applied to all
three tensors row for row, so a caller does not care which kind it holds; `cat_conditioning`
concatenates either kind.

`PromptEncoder` encodes prompts as the teacher's own diffusers pipeline does
(`StableDiffusionPipeline` or `StableDiffusionXLPipeline.encode_prompt` without clip skip), and
gives the null text of classifier-free guidance and null-text dropout: SD encodes "", SDXL
uses zeros for the context and the pooled vector when its folder says
``force_zeros_for_empty_prompt`` (the default of diffusers' SDXL pipeline and what SDXL base
ships), else it encodes "" through both encoders. The time ids are the pipeline's defaults for
the UNet's native size (docs/design.md, "Stable Diffusion XL conditioning").
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from aria_train.device import to_device
from aria_train.diffusion.text import _check_device, _padded_ids, encode_prompts, pooled_vector, pooled_width

HIDDEN, TEXT_EMBEDS = "hidden", "text_embeds"  # tensor names in a text-embedding cache


@dataclass(frozen=True)
class TextConditioning:
    """SDXL's conditioning of N prompts (module docstring); every tensor has N rows."""

    hidden: torch.Tensor  # (N, L, D1 + D2) cross-attention context
    text_embeds: torch.Tensor  # (N, P) pooled projection of the second encoder
    time_ids: torch.Tensor  # (N, 6) original size, crop top-left, target size, in pixels

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "TextConditioning":
        return TextConditioning(fn(self.hidden), fn(self.text_embeds), fn(self.time_ids))

    @property
    def shape(self) -> torch.Size:
        """The context's shape (N, L, D): what callers check of a tensor conditioning."""
        return self.hidden.shape

    @property
    def device(self) -> torch.device:
        return self.hidden.device

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def __getitem__(self, index) -> "TextConditioning":
        """Rows ``index`` (an int keeps its row: SDXL's inputs are always batched)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self._map(lambda t: t[index])

    def __setitem__(self, index, value: "TextConditioning") -> None:
        for mine, theirs in zip((self.hidden, self.text_embeds, self.time_ids),
                                (value.hidden, value.text_embeds, value.time_ids)):
            mine[index] = theirs

    def to(self, *args, **kwargs) -> "TextConditioning":
        return self._map(lambda t: t.to(*args, **kwargs))

    def float(self) -> "TextConditioning":
        return self._map(lambda t: t.float())

    def clone(self) -> "TextConditioning":
        return self._map(lambda t: t.clone())

    def expand(self, n: int, *_) -> "TextConditioning":
        """One row repeated n times (as ``tensor.expand(n, -1, -1)`` on a context)."""
        return self._map(lambda t: t.expand(n, *t.shape[1:]))

    def repeat_interleave(self, repeats: int, dim: int = 0) -> "TextConditioning":
        if dim != 0:
            raise ValueError("a conditioning repeats along its rows only (dim 0)")
        return self._map(lambda t: t.repeat_interleave(repeats, dim=0))


Conditioning = Union[torch.Tensor, TextConditioning]


def unet_inputs(conditioning: Conditioning, dtype: torch.dtype | None = None) -> dict:
    """The UNet's keyword arguments for ``conditioning``, cast to ``dtype`` if given:
    ``encoder_hidden_states`` and, for SDXL, ``added_cond_kwargs`` (text_embeds, time_ids)."""
    cast = (lambda t: t) if dtype is None else (lambda t: t.to(dtype))
    if isinstance(conditioning, torch.Tensor):
        return {"encoder_hidden_states": cast(conditioning)}
    return {"encoder_hidden_states": cast(conditioning.hidden),
            "added_cond_kwargs": {"text_embeds": cast(conditioning.text_embeds), "time_ids": cast(conditioning.time_ids)}}


def cat_conditioning(parts: Sequence[Conditioning]) -> Conditioning:
    """The rows of ``parts`` (all of one kind) one after another."""
    if all(isinstance(part, torch.Tensor) for part in parts):
        return torch.cat(list(parts))
    if not all(isinstance(part, TextConditioning) for part in parts):
        raise TypeError("cannot concatenate tensor and SDXL conditionings")
    return TextConditioning(torch.cat([p.hidden for p in parts]), torch.cat([p.text_embeds for p in parts]),
                            torch.cat([p.time_ids for p in parts]))


def cache_tensors(conditioning: Conditioning) -> dict[str, torch.Tensor]:
    """What a text-embedding cache stores of ``conditioning``: the context ("hidden") and, for
    SDXL, the pooled projection ("text_embeds"); the time ids are the teacher's, not the prompt's."""
    if isinstance(conditioning, torch.Tensor):
        return {HIDDEN: conditioning}
    return {HIDDEN: conditioning.hidden, TEXT_EMBEDS: conditioning.text_embeds}


class PromptEncoder:
    """The frozen text side of a teacher: prompts -> conditioning (module docstring).

    ``tokenizers`` and ``encoders``: one pair (SD v1/v2) or two (SDXL: CLIPTextModel, then
    CLIPTextModelWithProjection). ``time_ids``: SDXL's six ids, None for SD. ``zero_null``: the
    null text is zeros (SDXL's force_zeros_for_empty_prompt). The encoders must be on one device;
    ``to`` moves them together.
    """

    def __init__(self, tokenizers: Sequence[PreTrainedTokenizerBase], encoders: Sequence[torch.nn.Module],
                 time_ids: Sequence[int] | None = None, zero_null: bool = False):
        if len(tokenizers) != len(encoders) or len(encoders) not in (1, 2):
            raise ValueError(f"one or two (tokenizer, encoder) pairs expected, got {len(tokenizers)} and {len(encoders)}")
        if (len(encoders) == 2) != (time_ids is not None):
            raise ValueError("SDXL conditioning needs two encoders and the time ids; SD one encoder and none")
        if time_ids is not None and len(time_ids) != 6:
            raise ValueError(f"SDXL takes 6 time ids, got {list(time_ids)}")
        self.tokenizers, self.encoders = tuple(tokenizers), tuple(encoders)
        self.time_ids = None if time_ids is None else tuple(int(i) for i in time_ids)
        self.zero_null = zero_null
        # the time ids as a (1, 6) tensor per device, made once: `conditioning` runs for every
        # training batch, and a tensor built from a Python list is a host-to-device copy each time
        self._time_rows: dict[torch.device, torch.Tensor] = {}

    @property
    def sdxl(self) -> bool:
        return self.time_ids is not None

    @property
    def device(self) -> torch.device:
        return next(self.encoders[0].parameters()).device

    def to(self, *args, **kwargs) -> "PromptEncoder":
        """Move (and cast) every encoder; returns self."""
        for encoder in self.encoders:
            encoder.to(*args, **kwargs)
        return self

    @property
    def width(self) -> int:
        """Width D of the context: the encoders' hidden sizes together."""
        return sum(encoder.config.hidden_size for encoder in self.encoders)

    @property
    def pooled_width(self) -> int:
        """Width P of SDXL's pooled projection (the last encoder's pooled vector)."""
        return pooled_width(self.encoders[-1])

    @property
    def cache_names(self) -> tuple[str, ...]:
        """The tensors of a text-embedding cache of these prompts (`cache_tensors`)."""
        return (HIDDEN, TEXT_EMBEDS) if self.sdxl else (HIDDEN,)

    @property
    def length(self) -> int:
        """Tokens per prompt L."""
        return self.tokenizers[0].model_max_length

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> Conditioning:
        """The conditioning of ``texts``, float32 on the encoders' device."""
        if not self.sdxl:
            return encode_prompts(self.tokenizers[0], self.encoders[0], texts, self.device, batch_size)[0]
        texts = list(texts)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError("prompts must be strings")
        device = self.device
        for encoder in self.encoders:
            _check_device(encoder, device)
        hidden, pooled = [], []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                chunk = texts[start:start + batch_size]
                states = []
                for tokenizer, encoder in zip(self.tokenizers, self.encoders):
                    out = encoder(input_ids=to_device(_padded_ids(tokenizer, chunk), device), output_hidden_states=True)
                    states.append(out.hidden_states[-2].float())  # SDXL conditions on the penultimate layer
                hidden.append(torch.cat(states, dim=-1))
                pooled.append(pooled_vector(out).float())  # the last encoder's, as diffusers takes it
        if not texts:
            return self.zeros(0)
        return self.conditioning(torch.cat(hidden), torch.cat(pooled))

    def conditioning(self, hidden: torch.Tensor, text_embeds: torch.Tensor | None = None) -> Conditioning:
        """The conditioning of a context (and SDXL's pooled projection), e.g. rows of a text
        cache: SDXL gets its time ids, SD the context alone."""
        if not self.sdxl:
            return hidden
        if text_embeds is None:
            raise ValueError("SDXL conditioning needs the pooled projection text_embeds")
        row = self._time_rows.get(hidden.device)
        if row is None:
            row = self._time_rows[hidden.device] = torch.tensor([self.time_ids], dtype=torch.float32, device=hidden.device)
        return TextConditioning(hidden, text_embeds, row.repeat(len(hidden), 1))

    def from_cache(self, tensors: Mapping[str, torch.Tensor]) -> Conditioning:
        """The conditioning of a text cache's rows (`cache_tensors`' names)."""
        return self.conditioning(tensors[HIDDEN], tensors.get(TEXT_EMBEDS))

    def zeros(self, n: int) -> Conditioning:
        """n all-zero conditionings (SDXL's time ids stay the teacher's)."""
        device = self.device
        hidden = torch.zeros(n, self.length, self.width, device=device)
        if not self.sdxl:
            return hidden
        return self.conditioning(hidden, torch.zeros(n, self.pooled_width, device=device))

    def null(self) -> Conditioning:
        """The null text (one row): zeros under SDXL's force_zeros_for_empty_prompt, else ""."""
        return self.zeros(1) if self.zero_null else self.encode([""])


def blinded(hidden: Conditioning, regions: np.ndarray, blind: Sequence[int], null: Conditioning) -> Conditioning | None:
    """``hidden`` (one row per prompt of region ``regions``, -1 = none) with the rows of the
    regions ``blind`` set to the null text's conditioning ``null`` (one row): what a student that
    cannot tell those regions apart is shown (DistillConfig.blind_regions). None when no row is
    blind (the student sees ``hidden``)."""
    rows = np.flatnonzero(np.isin(regions, blind))
    if not rows.size:
        return None
    out = hidden.clone()
    out[torch.from_numpy(rows).to(null.device)] = null.expand(len(rows), -1, -1)
    return out
