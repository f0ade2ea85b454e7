"""The stream of training batches: paired data order, timesteps, conditions, noise.

Every random draw of a process comes from two explicit generators -- a numpy Generator (data
order is seed-only; timesteps, switches, replacing prompts, null text) and a CPU torch Generator
(the noise) -- plus the integer data cursor, so saving (generator states, cursor) and restoring
them continues the stream exactly. Under data parallelism each process has its own generators
(seeded by (seed, rank)) and takes its slice of one global batch.

A micro-batch is drawn in two parts, always in this order:

* ``BatchStream.draft``: what does not depend on the condition sampler -- the paired rows (the
  data cursor), the timesteps, the clean samples and the noise (and the test bed's unscaled
  teacher noise), already on their way to the device;
* ``BatchStream.finish``: RC's switch, the sampler's replacing prompts, the null text, regions,
  loss weights and the text embeddings.

ARIA's pi for micro-batch n+1 depends on its tracker after micro-batch n's feedback, so only
the draft of n+1 may be drawn while n trains (``Prefetcher``); its finish waits for that
feedback. Drafts and finishes alternate, so each generator draws in the order of one plain
sequential stream (the timesteps of n+1 after the switch, prompt and null draws of n; the
torch generator draws only noise): ahead of time or not, the batches are bitwise the same,
and the same as before the split.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from aria_train.conditioning.samplers import NULL_PROMPT, ConditionSampler, random_conditioning
from aria_train.device import to_device
from aria_train.distill.config import DistillConfig
from aria_train.data.cache import TensorCache
from aria_train.data.pool import PromptPool
from aria_train.diffusion.prompts import Conditioning, blinded
from aria_train.distill.inputs import TEXT_TENSOR, Inputs


@dataclass
class Batch:
    """One micro-batch of one process. Tensors are on the training device."""

    x0: torch.Tensor  # (B, C, H, W) float32 clean samples
    noise: torch.Tensor  # (B, C, H, W) float32, eps_true
    timesteps: torch.Tensor  # (B,) int64 in [0, T)
    hidden: Conditioning  # float32 condition embeddings: (B, L, D), or SDXL's TextConditioning
    paired: torch.Tensor  # (B,) bool, sample shows its own caption
    prompt_ids: np.ndarray  # (B,) int64 pool row of the condition, -1 = null text
    regions: np.ndarray  # (B,) int64 region of the condition, -1 = null text or no regions
    switched: np.ndarray  # (B,) bool, caption replaced by a drawn prompt
    nulled: np.ndarray  # (B,) bool, condition is the null text (prompt_ids == -1)
    weights: torch.Tensor | None = None  # (B,) float32 loss weights (ARIA's unbiased mode), None = all 1
    target_noise: torch.Tensor | None = None  # (B, C, H, W) float32 added to the teacher's prediction (noisy_regions)
    student_hidden: Conditioning | None = None  # the student's conditioning where it differs (blind_regions), else None


@dataclass
class Draft:
    """The sampler-independent part of a micro-batch (``BatchStream.draft``)."""

    captions: np.ndarray  # (B,) int64 pool rows of the paired samples' own captions
    t: np.ndarray  # (B,) int64 timesteps, on the host (RC's switch probability depends on them)
    x0: torch.Tensor  # on the device, as in Batch
    noise: torch.Tensor
    timesteps: torch.Tensor
    target_noise: torch.Tensor | None  # (B, C, H, W) standard normal, scaled per sample by finish


@dataclass(frozen=True)
class StreamPosition:
    """Where a stream stands: the data cursor and both generators (``BatchStream.seek``)."""

    cursor: int
    numpy_state: dict
    torch_state: torch.Tensor


def make_generators(seed: int, rank: int) -> tuple[np.random.Generator, torch.Generator]:
    """Process ``rank``'s numpy and torch generators, independent across ranks and of each other."""
    numpy_seq, torch_seq = np.random.SeedSequence([seed, rank]).spawn(2)
    noise = torch.Generator().manual_seed(int(torch_seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return np.random.default_rng(numpy_seq), noise


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of the n paired samples in ``epoch`` (a function of seed and epoch only)."""
    return np.random.default_rng([seed, epoch, 7]).permutation(n)


class ConditionEncoder:
    """Prompt ids -> conditioning: rows of the text cache, or the frozen encoders on the fly."""

    def __init__(self, inputs: Inputs, device: torch.device):
        self.pool, self.cache, self.device = inputs.pool, inputs.text_cache, device
        self.prompts = inputs.prompts  # encodes where its encoders live (the caller moved them to `device`)
        self.null = self.prompts.null().to(device)  # one row
        if self.cache is not None and self.cache.shape(TEXT_TENSOR)[1] != self.null.shape[1]:
            raise ValueError(f"text cache {self.cache.directory}: {self.cache.shape(TEXT_TENSOR)[1]} tokens per prompt, "
                             f"the teacher's tokenizer pads to {self.null.shape[1]}")

    def __call__(self, prompt_ids: np.ndarray) -> Conditioning:
        hidden = self.null.expand(len(prompt_ids), -1, -1).clone()
        real = np.flatnonzero(prompt_ids != NULL_PROMPT)
        if real.size:
            if self.cache is not None:  # converted on the device: fewer bytes to copy, the same float32 values
                tensors = {name: to_device(self.cache.get(name, prompt_ids[real]), self.device).to(torch.float32)
                           for name in self.prompts.cache_names}
                rows = self.prompts.from_cache(tensors)
            else:
                rows = self.prompts.encode(self.pool.texts(prompt_ids[real])).to(self.device)
            # positions, not a boolean mask: indexing by a mask asks the device how many rows it holds
            hidden[to_device(torch.from_numpy(real), self.device)] = rows
        return hidden


def region_mask(ids: list[int], pool: PromptPool, name: str, where: str) -> np.ndarray:
    """(K,) bool, True at the region ids ``ids`` of ``pool`` (ValueError if it has no such region)."""
    mask = np.zeros(max(pool.num_regions or 0, 1), dtype=bool)
    if ids:
        if pool.regions is None or max(ids) >= len(mask):
            raise ValueError(f"{name} {ids} need a pool with regions 0..K-1 that contains them "
                             f"(pool {where}: K = {pool.num_regions or 0})")
        mask[ids] = True
    return mask


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
        self.noisy = region_mask(config.noisy_regions, self.pool, "noisy_regions", config.pool)  # teacher noise on/off
        region_mask(config.blind_regions, self.pool, "blind_regions", config.pool)  # checks the ids

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
        """The next micro-batch, drawn now."""
        return self.finish(self.draft())

    def draft(self) -> Draft:
        """The sampler-independent part of the next micro-batch (advances the cursor and both generators)."""
        b = self.config.batch_size
        global_rows = self._global_indices(b * self.num_processes)
        self.cursor += b * self.num_processes
        rows = global_rows[self.rank * b: (self.rank + 1) * b]
        t = self.rng.integers(0, self.T, size=b, dtype=np.int64)
        x0 = self.paired.get("sample", rows).to(torch.float32)
        noise = torch.randn(x0.shape, generator=self.noise_generator, dtype=torch.float32)
        target_noise = None
        if self.config.noisy_regions:  # drawn only then, so every other run's noise stream is unchanged
            target_noise = to_device(torch.randn(x0.shape, generator=self.noise_generator, dtype=torch.float32),
                                     self.device)
        return Draft(captions=self.paired_prompt_ids[rows], t=t, x0=to_device(x0, self.device),
                     noise=to_device(noise, self.device), timesteps=to_device(torch.from_numpy(t), self.device),
                     target_noise=target_noise)

    def finish(self, draft: Draft) -> Batch:
        """The micro-batch of ``draft``: conditions drawn from the sampler as it is now."""
        b = len(draft.t)
        prompt_ids, paired, switched = random_conditioning(
            draft.captions, draft.t, self.T, self.sampler, self.rng, self.config.switch_schedule,
            self.config.switch_lambda, self.config.null_prob, enabled=self.config.method != "kd")
        regions = np.full(b, -1, dtype=np.int64)
        real = prompt_ids != NULL_PROMPT
        if self.pool.regions is not None:
            regions[real] = self.pool.regions[prompt_ids[real]]
        target_noise = None
        if draft.target_noise is not None:  # float32 products: the same on the device as on the host
            scale = np.where(real, self.noisy[np.maximum(regions, 0)], False) * self.config.noise_std
            scale = to_device(torch.from_numpy(scale).float(), self.device)
            target_noise = draft.target_noise * scale[:, None, None, None]
        weights = None
        if self.config.aria.unbiased:
            # A switched sample's loss is weighted by q_k / pi_k of its drawn region; one whose
            # condition was then nulled keeps weight 1 (its loss does not depend on the draw).
            drawn = switched & real
            weights = np.ones(b)
            weights[drawn] = self.sampler.loss_weights(regions[drawn])
            weights = to_device(torch.from_numpy(weights).float(), self.device)
        hidden = self.encoder(prompt_ids)
        return Batch(x0=draft.x0, noise=draft.noise, timesteps=draft.timesteps, hidden=hidden,
                     paired=to_device(torch.from_numpy(paired), self.device), prompt_ids=prompt_ids, regions=regions,
                     switched=switched, nulled=~real, weights=weights, target_noise=target_noise,
                     student_hidden=blinded(hidden, regions, self.config.blind_regions, self.encoder.null))

    def position(self) -> StreamPosition:
        return StreamPosition(self.cursor, self.rng.bit_generator.state, self.noise_generator.get_state())

    def seek(self, position: StreamPosition) -> None:
        """Continue from ``position`` (from ``position()``): the same batches as from there before."""
        self.cursor = position.cursor
        self.rng.bit_generator.state = position.numpy_state
        self.noise_generator.set_state(position.torch_state)

    def state(self) -> dict:
        return {"cursor": self.cursor}

    def load_state(self, state: dict) -> None:
        self.cursor = int(state["cursor"])


class Prefetcher:
    """A BatchStream's micro-batches, each one's draft drawn while the one before it trains.

    ``next()`` finishes the pending draft (or drafts now if none is pending), then hands the
    next draft to a background thread -- one ahead, no more -- so reading the paired cache,
    drawing the noise and the pinned host->device copies run while the main thread drives the
    step and waits on the device (torch and numpy release the GIL there). Nothing else touches
    the cursor and the generators between a draft and its finish, so the batches are those of
    ``stream.next()``, bitwise. ``background=False`` drafts at the same point in the main thread
    (the reference the tests compare with).

    A checkpoint must save the position where the handed-out batches end, not where the
    drafts have got to: ``settle()`` waits for the pending draft, puts the stream back to its
    start and drops it (the next ``next()`` draws it again, the same).
    """

    def __init__(self, stream: BatchStream, background: bool = True):
        self.stream = stream
        self._pending: tuple[StreamPosition, Future[Draft]] | None = None
        self._worker: ThreadPoolExecutor | None = None
        if background:
            # pinning memory from a thread whose current CUDA device is another rank's would
            # create a context (and hold memory) on that GPU
            start = None
            if stream.device.type == "cuda":
                index = torch.cuda.current_device() if stream.device.index is None else stream.device.index
                start = lambda: torch.cuda.set_device(index)  # noqa: E731
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="batch-draft", initializer=start)

    def next(self) -> Batch:
        draft = self.stream.draft() if self._pending is None else self._pending[1].result()
        self._pending = None
        batch = self.stream.finish(draft)
        self._pending = (self.stream.position(), self._run(self.stream.draft))
        return batch

    def _run(self, draw: Callable[[], Draft]) -> Future[Draft]:
        if self._worker is not None:
            return self._worker.submit(draw)
        done: Future[Draft] = Future()
        try:
            done.set_result(draw())
        except Exception as err:  # raised where a background draft's error would be: at next()
            done.set_exception(err)
        return done

    @property
    def cursor(self) -> int:
        """Paired samples in the batches handed out so far, all processes together."""
        return self.stream.cursor if self._pending is None else self._pending[0].cursor

    def settle(self) -> None:
        """Put the stream where the handed-out batches end (before its state is saved)."""
        if self._pending is not None:
            position, future = self._pending
            self._pending = None
            wait([future])  # a failed draft is drawn again, and fails, at the next next()
            self.stream.seek(position)

    def close(self) -> None:
        self.settle()
        if self._worker is not None:
            self._worker.shutdown()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
