"""The conditioning a UNet is called with (aria_train.diffusion.prompts): SD's plain context
tensors pass through unchanged, SDXL's TextConditioning behaves row for row like a context."""
import pytest
import torch

from aria_train.diffusion.prompts import TextConditioning, cache_tensors, cat_conditioning, unet_inputs


def conditioning(n: int, seed: int = 0) -> TextConditioning:
    g = torch.Generator().manual_seed(seed)
    return TextConditioning(torch.randn(n, 5, 12, generator=g), torch.randn(n, 4, generator=g),
                            torch.tensor([[16.0, 16, 0, 0, 16, 16]]).repeat(n, 1))


def test_a_context_tensor_is_passed_as_it_is():
    hidden = torch.randn(3, 5, 12)
    assert unet_inputs(hidden)["encoder_hidden_states"] is hidden and set(unet_inputs(hidden)) == {"encoder_hidden_states"}
    assert unet_inputs(hidden, torch.float64)["encoder_hidden_states"].dtype == torch.float64
    torch.testing.assert_close(cat_conditioning([hidden, hidden[:1]]), torch.cat([hidden, hidden[:1]]))
    assert cache_tensors(hidden) == {"hidden": hidden}


def test_sdxl_conditioning_behaves_row_for_row():
    cond = conditioning(3)
    assert len(cond) == 3 and cond.shape == (3, 5, 12)
    for index in (1, slice(0, 2), torch.tensor([2, 0])):
        part = cond[index]
        expect = cond.hidden[index] if not isinstance(index, int) else cond.hidden[index:index + 1]
        torch.testing.assert_close(part.hidden, expect)
        assert len(part.text_embeds) == len(part.time_ids) == len(part)
    one = cond[-1]
    torch.testing.assert_close(one.text_embeds, cond.text_embeds[2:])
    both = cat_conditioning([cond[:1], cond[1:]])
    assert all(torch.equal(getattr(both, k), getattr(cond, k)) for k in ("hidden", "text_embeds", "time_ids"))
    many = one.expand(4, -1, -1).clone()
    assert many.shape == (4, 5, 12) and torch.equal(many.time_ids[3], cond.time_ids[2])
    many[torch.tensor([1, 3])] = cond[:2]
    assert torch.equal(many.text_embeds[1], cond.text_embeds[0]) and torch.equal(many.hidden[3], cond.hidden[1])
    assert torch.equal(many.hidden[0], cond.hidden[2])
    repeated = cond.repeat_interleave(2)
    assert len(repeated) == 6 and torch.equal(repeated.text_embeds[3], cond.text_embeds[1])
    kwargs = unet_inputs(cond.to(torch.float64), torch.bfloat16)
    assert kwargs["encoder_hidden_states"].dtype == torch.bfloat16
    assert {k: v.dtype for k, v in kwargs["added_cond_kwargs"].items()} == {"text_embeds": torch.bfloat16,
                                                                           "time_ids": torch.bfloat16}
    assert set(cache_tensors(cond)) == {"hidden", "text_embeds"}  # time ids are the teacher's, not cached
    with pytest.raises(TypeError):
        cat_conditioning([cond, cond.hidden])
