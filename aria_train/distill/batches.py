"""The stream of training batches: paired data order, timesteps, conditions, noise.

Every random draw of a process comes from two explicit generators -- a numpy Generator (data
order is seed-only; timesteps, switches, replacing prompts, null text) and a CPU torch Generator
(the noise) -- plus the integer data cursor, so saving (generator states, cursor) and restoring
them continues the stream exactly. Under data parallelism each process has its own generators
(seeded by (seed, rank)) and takes its slice of one global batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aria_train.conditioning.samplers import NULL_PROMPT, ConditionSampler, random_conditioning
from aria_train.distill.config import DistillConfig
from aria_train.data.cache import TensorCache
from aria_train.data.pool import PromptPool
from aria_train.distill.inputs import TEXT_TENSOR, Inputs


@dataclass
class Batch:
    """One micro-batch of one process. Tensors are on the training device."""

    x0: torch.Tensor  # (B, C, H, W) float32 clean samples
    noise: torch.Tensor  # (B, C, H, W) float32, eps_true
    timesteps: torch.Tensor  # (B,) int64 in [0, T)
    hidden: torch.Tensor  # (B, L, D) float32 condition embeddings
    paired: torch.Tensor  # (B,) bool, sample shows its own caption
    prompt_ids: np.ndarray  # (B,) int64 pool row of the condition, -1 = null text
    regions: np.ndarray  # (B,) int64 region of the condition, -1 = null text or no regions
    switched: np.ndarray  # (B,) bool, caption replaced by a drawn prompt
    nulled: np.ndarray  # (B,) bool, condition is the null text (prompt_ids == -1)
    weights: torch.Tensor | None = None  # (B,) float32 loss weights (ARIA's unbiased mode), None = all 1
    target_noise: torch.Tensor | None = None  # (B, C, H, W) float32 added to the teacher's prediction (noisy_regions)


def make_generators(seed: int, rank: int) -> tuple[np.random.Generator, torch.Generator]:
    """Process ``rank``'s numpy and torch generators, independent across ranks and of each other."""
    numpy_seq, torch_seq = np.random.SeedSequence([seed, rank]).spawn(2)
    noise = torch.Generator().manual_seed(int(torch_seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return np.random.default_rng(numpy_seq), noise


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of the n paired samples in ``epoch`` (a function of seed and epoch only)."""
    return np.random.default_rng([seed, epoch, 7]).permutation(n)


class ConditionEncoder:
    """Prompt ids -> text embeddings: rows of the text cache, or the frozen encoder on the fly."""

    def __init__(self, inputs: Inputs, device: torch.device):
        from aria_train.diffusion.text import encode_prompts

        self.pool, self.cache, self.device = inputs.pool, inputs.text_cache, device
        self.tokenizer, self.encoder = inputs.tokenizer, inputs.text_encoder
        # encode where the encoder lives (the caller moved it to `device`; torch may spell a
        # device "cpu" or "cpu:0", which encode_prompts would tell apart)
        self.encoder_device = next(self.encoder.parameters()).device
        self.null = encode_prompts(self.tokenizer, self.encoder, [""], self.encoder_device)[0].to(device)  # (1, L, D)
        if self.cache is not None and self.cache.shape(TEXT_TENSOR)[1] != self.null.shape[1]:
            raise ValueError(f"text cache {self.cache.directory}: {self.cache.shape(TEXT_TENSOR)[1]} tokens per prompt, "
                             f"the teacher's tokenizer pads to {self.null.shape[1]}")

    def __call__(self, prompt_ids: np.ndarray) -> torch.Tensor:
        from aria_train.diffusion.text import encode_prompts

        hidden = self.null.expand(len(prompt_ids), -1, -1).clone()
        real = prompt_ids != NULL_PROMPT
        if real.any():
            if self.cache is not None:
                rows = self.cache.get(TEXT_TENSOR, prompt_ids[real]).to(self.device, torch.float32)
            else:
                texts = self.pool.texts(prompt_ids[real])
                rows = encode_prompts(self.tokenizer, self.encoder, texts, self.encoder_device)[0].to(self.device)
            hidden[torch.from_numpy(real).to(self.device)] = rows
        return hidden


class BatchStream:
    """Draws the micro-batches of one process; ``state()``/``load_state()`` for checkpoints."""

    def __init__(self, config: DistillConfig, inputs: Inputs, sampler: ConditionSampler, encoder: ConditionEncoder,
                 rank: int, num_processes: int, device: torch.device):
        self.config, self.sampler, self.encoder = config, sampler, encoder
        self.paired: TensorCache = inputs.paired
        self.paired_prompt_ids = inputs.paired_prompt_ids
        self.pool: PromptPool = inputs.pool
        self.T = int(inputs.scheduler.config.num_train_timesteps)
        self.rank, self.num_processes, self.device = rank, num_processes, device
        self.rng, self.noise_generator = make_generators(config.seed, rank)
        self.cursor = 0  # paired samples consumed by all processes together
        self._order: tuple[int, np.ndarray] | None = None
        self.noisy = np.zeros(max(self.pool.num_regions or 0, 1), dtype=bool)  # region -> teacher noise on/off
        if config.noisy_regions:
            if self.pool.regions is None or max(config.noisy_regions) >= len(self.noisy):
                raise ValueError(f"noisy_regions {config.noisy_regions} need a pool with regions 0..K-1 "
                                 f"that contains them (pool {config.pool}: K = {self.pool.num_regions or 0})")
            self.noisy[config.noisy_regions] = True

    def _global_indices(self, count: int) -> np.ndarray:
        n, out = len(self.paired), []
        position = self.cursor
        while len(out) < count:
            epoch, offset = divmod(position, n)
            if self._order is None or self._order[0] != epoch:
                self._order = (epoch, epoch_order(self.config.seed, epoch, n))
            take = self._order[1][offset: offset + count - len(out)]
            out.extend(take.tolist())
            position += len(take)
        return np.asarray(out, dtype=np.int64)

    def next(self) -> Batch:
        b = self.config.batch_size
        global_rows = self._global_indices(b * self.num_processes)
        self.cursor += b * self.num_processes
        rows = global_rows[self.rank * b: (self.rank + 1) * b]
        t = self.rng.integers(0, self.T, size=b, dtype=np.int64)
        prompt_ids, paired, switched = random_conditioning(
            self.paired_prompt_ids[rows], t, self.T, self.sampler, self.rng, self.config.switch_schedule,
            self.config.switch_lambda, self.config.null_prob, enabled=self.config.method != "kd")
        x0 = self.paired.get("sample", rows).to(torch.float32)
        noise = torch.randn(x0.shape, generator=self.noise_generator, dtype=torch.float32)
        regions = np.full(b, -1, dtype=np.int64)
        real = prompt_ids != NULL_PROMPT
        if self.pool.regions is not None:
            regions[real] = self.pool.regions[prompt_ids[real]]
        target_noise = None
        if self.config.noisy_regions:  # drawn only then, so every other run's noise stream is unchanged
            scale = np.where(real, self.noisy[np.maximum(regions, 0)], False) * self.config.noise_std
            target_noise = torch.randn(x0.shape, generator=self.noise_generator, dtype=torch.float32)
            target_noise = (target_noise * torch.from_numpy(scale).float()[:, None, None, None]).to(self.device)
        weights = None
        if self.config.aria.unbiased:
            # A switched sample's loss is weighted by q_k / pi_k of its drawn region; one whose
            # condition was then nulled keeps weight 1 (its loss does not depend on the draw).
            drawn = switched & real
            weights = np.ones(b)
            weights[drawn] = self.sampler.loss_weights(regions[drawn])
            weights = torch.from_numpy(weights).to(self.device, torch.float32)
        return Batch(x0=x0.to(self.device), noise=noise.to(self.device), timesteps=torch.from_numpy(t).to(self.device),
                     hidden=self.encoder(prompt_ids), paired=torch.from_numpy(paired).to(self.device),
                     prompt_ids=prompt_ids, regions=regions, switched=switched, nulled=~real, weights=weights,
                     target_noise=target_noise)

    def state(self) -> dict:
        return {"cursor": self.cursor}

    def load_state(self, state: dict) -> None:
        self.cursor = int(state["cursor"])
