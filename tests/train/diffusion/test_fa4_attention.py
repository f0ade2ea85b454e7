"""FlashAttention-4 as the UNets' attention (aria_train.diffusion.models.fa4_attention,
``aria distill --attention fa4-self|fa4``). FA4 runs on Hopper GPUs only: here its kernels are
stood in for by exact attention on the CPU, and what a run that cannot use FA4 gets is checked."""
import pytest
import torch
from diffusers import UNet2DConditionModel

from aria_train.diffusion.models import fa4_attention
from aria_train.diffusion.models.configs import tiny_unet_config
from cli_errors import refused, snapshot
from fixtures_train import make_distill_inputs
from tiny_unet import output_and_grads as unet_output_and_grads


def test_fa4_ops_compile_and_match_sdpa_with_stand_in_kernels():
    """FA4's kernels stood in for by exact attention registered for the CPU: the custom ops pass
    torch's opcheck (schema, fake tensors, autograd registration), compile into one graph, and the
    tiny teacher with FA4AttnProcessor, in all its attention or in the self-attention alone, gives
    diffusers' own output and parameter gradients; the backward's head-width padding (8 -> 32
    here) is exact.
    (The stand-in stays registered in this test process; it computes what FA4 computes.)"""
    def forward_cpu(q, k, v, scale):
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
        lse = scores.logsumexp(-1)
        out = torch.einsum("bhqk,bkhd->bqhd", (scores - lse[..., None]).exp(), v)
        return out.contiguous(), lse.contiguous()  # FA4 writes both into fresh contiguous tensors

    def backward_cpu(q, k, v, out, grad_out, lse, scale):  # FA's backward, written out
        p = (torch.einsum("bqhd,bkhd->bhqk", q, k) * scale - lse[..., None]).exp()
        grad_p = torch.einsum("bqhd,bkhd->bhqk", grad_out, v)
        grad_s = p * (grad_p - torch.einsum("bqhd,bqhd->bhq", grad_out, out)[..., None])
        grads = (torch.einsum("bhqk,bkhd->bqhd", grad_s, k) * scale, torch.einsum("bhqk,bqhd->bkhd", grad_s, q) * scale,
                 torch.einsum("bhqk,bqhd->bkhd", p, grad_out))
        return tuple(g.contiguous() for g in grads)

    fa4_attention.fa4_forward.register_kernel("cpu")(forward_cpu)
    fa4_attention.fa4_backward.register_kernel("cpu")(backward_cpu)
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 3, 8, generator=generator, requires_grad=True) for n in (5, 7, 7))
    torch.library.opcheck(fa4_attention.fa4_forward, (q, k, v, 8 ** -0.5))
    reference = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
    compiled = torch.compile(fa4_attention.attention, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), reference)
    grads = torch.autograd.grad(compiled(q, k, v).sum(), (q, k, v))
    torch.testing.assert_close(grads, torch.autograd.grad(reference.sum(), (q, k, v)))

    config = tiny_unet_config(in_channels=4, sample_size=8)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config)
    inputs = (torch.randn(2, 4, 8, 8, generator=generator), torch.tensor([10, 500]),
              torch.randn(2, 77, config["cross_attention_dim"], generator=generator))

    def output_and_grads():
        return unet_output_and_grads(unet, *inputs)

    sdpa_out, sdpa_grads = output_and_grads()
    fa4_attention.use_fa4(unet, self_attention_only=True)
    processors = unet.attn_processors
    assert {type(p).__name__ for name, p in processors.items() if name.endswith(".attn1.processor")} == {"FA4AttnProcessor"}
    assert "FA4AttnProcessor" not in {type(p).__name__ for name, p in processors.items() if name.endswith(".attn2.processor")}
    torch.testing.assert_close(output_and_grads(), (sdpa_out, sdpa_grads), rtol=1e-3, atol=1e-5)
    fa4_attention.use_fa4(unet)
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"FA4AttnProcessor"}
    torch.testing.assert_close(output_and_grads(), (sdpa_out, sdpa_grads), rtol=1e-3, atol=1e-5)


def test_backward_widths_are_sd_widths_padded_to_a_multiple_of_32():
    """SD v1.4's head widths 40 and 80, which FA4 4.0.0b40's backward gets wrong, run at 64 and 96;
    160 and 64, multiples of 32, as they are."""
    assert [fa4_attention.padded_width(w) for w in (40, 80, 160, 64, 8)] == [64, 96, 160, 64, 32]


@pytest.mark.parametrize("attention", ["sdpa", "fa4-self", "fa4"])
def test_set_attention_puts_fa4_in_both_unets(monkeypatch, attention):
    """What `aria distill --attention` does to the teacher and the student (the checks of
    check_fa4 passed): FA4's processor in every self-attention, and with fa4 in the cross-attention
    too; sdpa leaves diffusers' SDPA processor everywhere."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from aria_train.diffusion.models.students import make_student
    from aria_train.distill.speed import set_attention

    monkeypatch.setattr(fa4_attention, "check_fa4", lambda device, dtype: None)
    teacher = UNet2DConditionModel(**tiny_unet_config(in_channels=4, sample_size=8))
    student = make_student(teacher, "small")
    set_attention(teacher, student, attention)
    for unet in (teacher, student):
        kinds = {(name.rsplit(".", 2)[-2], type(p)) for name, p in unet.attn_processors.items()}
        fa4 = fa4_attention.FA4AttnProcessor
        expected = {"sdpa": {("attn1", AttnProcessor2_0), ("attn2", AttnProcessor2_0)},
                    "fa4-self": {("attn1", fa4), ("attn2", AttnProcessor2_0)},
                    "fa4": {("attn1", fa4), ("attn2", fa4)}}[attention]
        assert kinds == expected


@pytest.mark.parametrize("attention", ["fa4-self", "fa4"])
def test_distill_with_fa4_where_it_cannot_run_is_refused_in_one_line(tmp_path, capsys, attention):
    """On a CPU (or a GPU that is not a Hopper) `aria distill --attention fa4...` stops with one line
    before the run folder is written."""
    paths = make_distill_inputs(tmp_path / "inputs")
    out = tmp_path / "run"
    refused(paths.options(out, "--steps", "1", "--attention", attention), capsys, "--attention fa4 needs a Hopper GPU")
    assert snapshot(out) is None


def test_check_fa4_names_what_is_missing(monkeypatch):
    """Each condition, with the others met: the device, bf16, the package."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "stand-in H100")
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match="needs bf16 .* not torch.float32"):
        fa4_attention.check_fa4(cuda, torch.float32)
    monkeypatch.setattr(fa4_attention, "available", lambda: "ModuleNotFoundError: No module named 'flash_attn'")
    with pytest.raises(ValueError, match="needs flash-attn-4 .*No module named 'flash_attn'"):
        fa4_attention.check_fa4(cuda, torch.bfloat16)
    monkeypatch.setattr(fa4_attention, "available", lambda: "")
    fa4_attention.check_fa4(cuda, torch.bfloat16)  # all met: no error
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with pytest.raises(ValueError, match="needs a Hopper GPU .* not stand-in H100"):
        fa4_attention.check_fa4(cuda, torch.bfloat16)
