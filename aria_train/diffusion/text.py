"""The frozen text stack shared by teacher and student: tokenizer, CLIP text encoder, prompt encoding.

Two sources, one code path. The embedded world builds a word-level tokenizer from its vocabulary
(`build_tokenizer`) and a randomly initialised, frozen `CLIPTextModel` (`build_text_encoder`);
real Stable Diffusion loads its folder's CLIPTokenizer and CLIPTextModel. Both are saved and
loaded in the diffusers folder layout, FOLDER/tokenizer and FOLDER/text_encoder
(`save_text_stack` / `load_text_stack`), and encoded the way SD does it (`encode_prompts`):
padded to the tokenizer's fixed `model_max_length` (77 for CLIP), no attention mask.

For embedding many prompts at the GPU's speed (`aria regions`): `fixed_length_tokenizer` gives
the same token ids as `encode_prompts` straight from the Rust tokenizer (no per-call Python set-up
in transformers), `prefetch` runs such work in a background thread ahead of its consumer, and
`pooled_outputs` keeps the next batch queued on the GPU while the previous one is copied back.
Nothing here touches the network.
"""
from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from aria_train.device import to_device

# Special tokens of the word-level tokenizer, in id order. The end-of-text id must not be 2:
# CLIPTextModel treats eos_token_id == 2 as a legacy config and pools at the *largest* token id
# instead of at the first end-of-text token.
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))


def build_tokenizer(vocabulary: Sequence[str], max_length: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `vocabulary` (plus the four special tokens, ids 0..3).

    Text is NFKC-normalised and lower-cased, then split into words and punctuation runs
    (``\\w+|[^\\w\\s]+``); each piece maps to its vocabulary id or to <unk>. Every sequence is
    wrapped as <bos> ... <eos>, and `max_length` (tokens, bos/eos included) becomes
    `model_max_length`, the fixed padded length used by `encode_prompts`. Vocabulary entries are
    lower-cased and deduplicated (first occurrence keeps its place); each must be one such
    piece (so none can collide with a special token), and punctuation that prompts contain
    (",") must be in the vocabulary to be known.
    Save with ``save_pretrained``; ``AutoTokenizer.from_pretrained(folder)`` reloads it offline.
    """
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 tokens (bos, one word, eos), got {max_length}")
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Whitespace()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in vocabulary:
        if not isinstance(word, str):
            raise ValueError(f"vocabulary entries must be strings, got {word!r}")
        normal = normalizer.normalize_str(word)
        pieces = [piece for piece, _ in pre_tokenizer.pre_tokenize_str(normal)]
        if pieces != [normal]:
            raise ValueError(f"vocabulary entry {word!r} is not a single word or punctuation run (splits into {pieces})")
        vocab.setdefault(normal, len(vocab))
    if len(vocab) == len(SPECIAL_TOKENS):
        raise ValueError("vocabulary is empty")

    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
        special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=max_length,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        padding_side="right",
        truncation_side="right",
    )


def build_text_encoder(
    vocab_size: int,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_length: int = 77,
    *,
    pad_token_id: int = PAD_ID,
    bos_token_id: int = BOS_ID,
    eos_token_id: int = EOS_ID,
    seed: int = 0,
) -> CLIPTextModel:
    """A randomly initialised CLIP text encoder, frozen (eval mode, no gradients).

    `vocab_size` must be ``len(tokenizer)`` and `max_length` at least the tokenizer's
    `model_max_length` (position embeddings); the token ids default to `build_tokenizer`'s.
    The feed-forward width is 4 * `hidden` (as in CLIP). The weights depend only on the
    arguments: they are drawn under `seed` without touching the global torch RNG.
    """
    if eos_token_id == 2:
        raise ValueError("eos_token_id 2 makes CLIPTextModel pool at the largest token id; use another id")
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=max_length,
        projection_dim=hidden,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPTextModel(config)
    return _freeze(encoder)


def _freeze(encoder: CLIPTextModel) -> CLIPTextModel:
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder


def save_text_stack(folder: str | Path, tokenizer: PreTrainedTokenizerBase, text_encoder: CLIPTextModel) -> None:
    """Write FOLDER/tokenizer and FOLDER/text_encoder (safetensors), the diffusers layout."""
    folder = Path(folder)
    tokenizer.save_pretrained(folder / "tokenizer")
    text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)


def load_text_stack(folder: str | Path) -> tuple[PreTrainedTokenizerBase, CLIPTextModel]:
    """Load FOLDER/tokenizer (any AutoTokenizer folder: ours or SD's CLIPTokenizer) and
    FOLDER/text_encoder (CLIPTextModel), offline; the encoder is frozen and on the CPU."""
    folder = Path(folder)
    for part in ("tokenizer", "text_encoder"):
        if not (folder / part).is_dir():
            raise FileNotFoundError(f"{folder / part} not found: expected a model folder with tokenizer/ and text_encoder/")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True)
    if tokenizer.model_max_length > encoder.config.max_position_embeddings:
        raise ValueError(
            f"{folder}: tokenizer pads to {tokenizer.model_max_length} tokens but the text encoder has only "
            f"{encoder.config.max_position_embeddings} positions"
        )
    return tokenizer, _freeze(encoder)


@torch.no_grad()
def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    text_encoder: CLIPTextModel,
    texts: Sequence[str],
    device: str | torch.device,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode prompts as Stable Diffusion does: (hidden (N, L, D), pooled (N, D)), float32 on `device`.

    Every prompt is padded / truncated to L = ``tokenizer.model_max_length`` tokens (truncation
    keeps the end-of-text token) and run through the encoder without an attention mask, so a
    prompt's embedding does not depend on the batch it is in. `hidden` is the last hidden state
    (the UNet's cross-attention context); `pooled` is the state at the end-of-text token. The
    empty prompt "" (the null text of classifier-free guidance) is a valid prompt. The encoder
    must already be on `device`; `batch_size` is in prompts.
    """
    device = _check_device(text_encoder, device)
    texts = list(texts)
    if not all(isinstance(text, str) for text in texts):
        raise ValueError("prompts must be strings")
    length = tokenizer.model_max_length
    hidden_parts, pooled_parts = [], []
    for start in range(0, len(texts), batch_size):
        ids = to_device(_padded_ids(tokenizer, texts[start : start + batch_size]), device)
        out = text_encoder(input_ids=ids)
        hidden_parts.append(out.last_hidden_state.float())
        pooled_parts.append(pooled_vector(out).float())
    if not texts:
        width = text_encoder.config.hidden_size
        return torch.empty(0, length, width, device=device), torch.empty(0, width, device=device)
    return torch.cat(hidden_parts), torch.cat(pooled_parts)


def pooled_vector(output) -> torch.Tensor:
    """A CLIP text encoder's pooled output: the projected ``text_embeds`` of a
    CLIPTextModelWithProjection (SDXL's second encoder, whose projection conditions the UNet),
    else ``pooler_output`` (the state at the end-of-text token)."""
    embeds = getattr(output, "text_embeds", None)
    return embeds if embeds is not None else output.pooler_output


def pooled_width(text_encoder: torch.nn.Module) -> int:
    """Width of `pooled_vector`: the projection's for a CLIPTextModelWithProjection, else the hidden size."""
    projects = getattr(text_encoder, "text_projection", None) is not None
    return text_encoder.config.projection_dim if projects else text_encoder.config.hidden_size


def _check_device(text_encoder: CLIPTextModel, device: str | torch.device) -> torch.device:
    """`device` as a torch.device; ValueError unless the text encoder is on it."""
    device = torch.device(device)
    encoder_device = next(text_encoder.parameters()).device
    if encoder_device.type != device.type or (device.index is not None and encoder_device.index != device.index):
        raise ValueError(f"the text encoder is on {encoder_device}, not on {device}: move it first")
    return device


def _padded_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> torch.Tensor:
    """int64 (N, L) token ids, L = ``tokenizer.model_max_length``: padded / truncated as SD does."""
    return tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def fixed_length_tokenizer(tokenizer: PreTrainedTokenizerBase) -> Callable[[Sequence[str]], torch.Tensor]:
    """texts -> int64 (N, L) token ids, the same ids as `encode_prompts` makes, read from the
    tokenizer's Rust backend directly.

    Why: transformers' ``tokenizer(...)`` re-applies the padding and truncation settings to the
    backend and builds a BatchEncoding (offsets, masks) on every call, which makes it ~2.5x
    slower than the backend's own batch encoding and caps embedding at a few thousand prompts/s.
    The returned function encodes with a private copy of the backend (so the caller's tokenizer
    is never reconfigured, and the copy can run in another thread) set to pad and truncate to
    ``model_max_length`` on the tokenizer's sides, with its pad token; the batch is encoded in
    Rust without the GIL, on all cores. A tokenizer with no Rust backend (a Python one) is
    called as `encode_prompts` calls it.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return lambda texts: _padded_ids(tokenizer, texts)
    length = tokenizer.model_max_length
    fast = Tokenizer.from_str(backend.to_str())
    fast.enable_truncation(length, direction=tokenizer.truncation_side)
    fast.enable_padding(direction=tokenizer.padding_side, pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token,
                        length=length)

    # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which are not needed here
    encode = getattr(fast, "encode_batch_fast", fast.encode_batch)

    def ids(texts: Sequence[str]) -> torch.Tensor:
        encodings = encode(list(texts))
        # one flat iterator into a preallocated array: ~4x faster than np.array of per-prompt lists
        flat = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int64, len(encodings) * length)
        return torch.from_numpy(flat.reshape(len(encodings), length))

    return ids


Item = TypeVar("Item")
Result = TypeVar("Result")


def prefetch(fn: Callable[[Item], Result], items: Iterable[Item], depth: int = 2) -> Iterator[Result]:
    """``fn(item)`` for each item, in order, computed by one background thread up to ``depth``
    results ahead of the consumer (so at most ``depth`` + 1 results are held at once).

    For host work that releases the GIL (Rust tokenization, pinning memory) overlapped with a
    consumer that drives the GPU. An exception in ``fn`` is raised in the consumer at its item;
    a consumer that stops early leaves at most ``depth`` calls to finish.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    items = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as worker:
        pending = deque(worker.submit(fn, item) for item in itertools.islice(items, depth))
        try:
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(items, 1):
                    pending.append(worker.submit(fn, item))
                yield result
        finally:
            for future in pending:
                future.cancel()


@torch.no_grad()
def pooled_outputs(text_encoder: CLIPTextModel, id_batches: Iterable[torch.Tensor],
                   device: str | torch.device) -> Iterator[torch.Tensor]:
    """The pooled output (n, D), float32 on the CPU, of each batch of token ids (n, L), in order,
    computed by the encoder in its dtype on `device`, where it must already be.

    On a CUDA device the next batch is queued on the GPU before the previous one's result is
    waited for (its copy to the host is asynchronous, into pinned memory), so the GPU does not
    idle while the host hands a result on and launches the next batch. Ids in pinned memory are
    copied without waiting for the GPU either (`prefetch` can pin them in its thread).
    """
    device = _check_device(text_encoder, device)
    waiting: tuple[torch.Tensor, torch.cuda.Event] | None = None  # the previous batch, on its way to the host
    for ids in id_batches:
        pooled = pooled_vector(text_encoder(input_ids=ids.to(device, non_blocking=True))).float()
        if device.type != "cuda":
            yield pooled
            continue
        host = pooled.to("cpu", non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        if waiting is not None:
            waiting[1].synchronize()
            yield waiting[0]
        waiting = (host, copied)
    if waiting is not None:
        waiting[1].synchronize()
        yield waiting[0]
