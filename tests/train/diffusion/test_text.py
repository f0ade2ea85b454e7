"""The text stack: word-level tokenizer, frozen CLIP text encoder, SD-style prompt encoding."""
import json

import pytest
import torch
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

from aria_train.diffusion.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    build_text_encoder,
    build_tokenizer,
    encode_prompts,
    load_text_stack,
    save_text_stack,
)

WORDS = ["a", "Red", "green", "circle", "square", ","]
PROMPTS = ["a red circle", "A RED Circle", "a green square, a red circle", "", "a purple circle", "red"]


def tiny_stack(max_length=8, seed=0):
    tokenizer = build_tokenizer(WORDS, max_length)
    return tokenizer, build_text_encoder(len(tokenizer), hidden=16, layers=1, heads=2, max_length=max_length, seed=seed)


def test_tokenizer_round_trip_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = build_tokenizer(WORDS, 8)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    kwargs = dict(padding="max_length", max_length=8, truncation=True)
    assert loaded(PROMPTS, **kwargs).input_ids == tokenizer(PROMPTS, **kwargs).input_ids
    assert loaded.model_max_length == 8
    assert (loaded.pad_token_id, loaded.unk_token_id, loaded.bos_token_id, loaded.eos_token_id) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    assert len(loaded) == len(tokenizer) == 4 + len(WORDS)


def test_tokenizer_padding_truncation_and_normalisation():
    tokenizer = build_tokenizer(WORDS, 6)
    vocab = tokenizer.get_vocab()
    ids = tokenizer(PROMPTS, padding="max_length", max_length=6, truncation=True).input_ids
    assert all(len(row) == 6 and row[0] == BOS_ID and row.count(EOS_ID) == 1 for row in ids)
    assert ids[0] == ids[1] == [BOS_ID, vocab["a"], vocab["red"], vocab["circle"], EOS_ID, PAD_ID]
    assert ids[2] == [BOS_ID, vocab["a"], vocab["green"], vocab["square"], vocab[","], EOS_ID]  # truncated, eos kept
    assert ids[3] == [BOS_ID, EOS_ID] + [PAD_ID] * 4  # the null text
    assert ids[4][2] == UNK_ID


@pytest.mark.parametrize("vocabulary, max_length, message", [
    (["a red"], 8, "single word"),
    (["<pad>"], 8, "single word"),
    ([], 8, "empty"),
    (["a"], 2, "max_length"),
    (["a", 3], 8, "strings"),
])
def test_tokenizer_rejects_bad_vocabulary(vocabulary, max_length, message):
    with pytest.raises(ValueError, match=message):
        build_tokenizer(vocabulary, max_length)


def test_text_encoder_is_seeded_frozen_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    _, first = tiny_stack(seed=3)
    _, again = tiny_stack(seed=3)
    _, other = tiny_stack(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    weights = [dict(model.state_dict()) for model in (first, again, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not torch.equal(weights[0]["embeddings.token_embedding.weight"], weights[2]["embeddings.token_embedding.weight"])
    assert not first.training and not any(p.requires_grad for p in first.parameters())
    assert first.config.eos_token_id == EOS_ID and first.config.pad_token_id == PAD_ID
    with pytest.raises(ValueError, match="eos_token_id"):
        build_text_encoder(10, eos_token_id=2)


def test_encode_prompts_shapes_batching_and_pooling():
    tokenizer, encoder = tiny_stack()
    hidden, pooled = encode_prompts(tokenizer, encoder, PROMPTS, "cpu", batch_size=4)
    assert hidden.shape == (len(PROMPTS), 8, 16) and pooled.shape == (len(PROMPTS), 16)
    assert hidden.dtype == pooled.dtype == torch.float32 and not hidden.requires_grad
    one_by_one, _ = encode_prompts(tokenizer, encoder, PROMPTS, "cpu", batch_size=1)
    torch.testing.assert_close(hidden, one_by_one)  # no dependence on the batch
    torch.testing.assert_close(hidden[0], hidden[1])  # case-insensitive
    ids = tokenizer(PROMPTS, padding="max_length", max_length=8, truncation=True, return_tensors="pt").input_ids
    eos_at = (ids == EOS_ID).int().argmax(dim=1)
    torch.testing.assert_close(pooled, hidden[torch.arange(len(PROMPTS)), eos_at])
    empty_hidden, empty_pooled = encode_prompts(tokenizer, encoder, [], "cpu")
    assert empty_hidden.shape == (0, 8, 16) and empty_pooled.shape == (0, 16)
    with pytest.raises(ValueError, match="not on meta"):
        encode_prompts(tokenizer, encoder, PROMPTS, "meta")
    with pytest.raises(ValueError, match="strings"):
        encode_prompts(tokenizer, encoder, ["a", None], "cpu")


def test_text_stack_save_load_round_trip(tmp_path):
    tokenizer, encoder = tiny_stack()
    save_text_stack(tmp_path, tokenizer, encoder)
    loaded_tokenizer, loaded_encoder = load_text_stack(tmp_path)
    assert not loaded_encoder.training and not any(p.requires_grad for p in loaded_encoder.parameters())
    for want, got in zip(encode_prompts(tokenizer, encoder, PROMPTS, "cpu"),
                         encode_prompts(loaded_tokenizer, loaded_encoder, PROMPTS, "cpu")):
        assert torch.equal(want, got)
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_text_stack(tmp_path / "nowhere")


def test_load_text_stack_reads_a_stable_diffusion_style_folder(tmp_path):
    """SD ships tokenizer/ as CLIPTokenizer files (vocab.json, merges.txt, tokenizer_config.json)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)} | {c + "</w>": 26 + i for i, c in enumerate(letters)}
    for token in ("re", "red</w>", "<|startoftext|>", "<|endoftext|>"):
        vocab[token] = len(vocab)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "tokenizer" / "merges.txt").write_text("#version: 0.2\nr e\nre d</w>\n")
    (tmp_path / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 12, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))
    eos = vocab["<|endoftext|>"]
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, max_position_embeddings=12, bos_token_id=vocab["<|startoftext|>"],
                            eos_token_id=eos, pad_token_id=eos)
    CLIPTextModel(config).save_pretrained(tmp_path / "text_encoder")
    tokenizer, encoder = load_text_stack(tmp_path)
    prompts = ["a red cat", "", "RED"]
    hidden, pooled = encode_prompts(tokenizer, encoder, prompts, "cpu")
    assert hidden.shape == (3, 12, 16)
    ids = tokenizer(prompts, padding="max_length", max_length=12, truncation=True, return_tensors="pt").input_ids
    assert ids[2, 1] == vocab["red</w>"] and ids[0, 0] == vocab["<|startoftext|>"]
    first_eos = (ids == eos).int().argmax(dim=1)
    torch.testing.assert_close(pooled, hidden[torch.arange(3), first_eos])
