"""The distillation loss (aria_train.distill.losses): its composition from the output, feature and
SD terms, the SD term's paired samples, fp32 arithmetic whatever the input dtype, and gradients
that reach the student only."""
import pytest
import torch

from aria_train.distill.losses import LossWeights, distillation_loss


def _loss_inputs(dtype=torch.float32, n=6):
    g = torch.Generator().manual_seed(0)
    eps_s, eps_t, eps = (torch.randn(n, 3, 4, 4, generator=g).to(dtype) for _ in range(3))
    feats_s = {"a": torch.randn(n, 5, 2, 2, generator=g).to(dtype)}
    feats_t = {"A": torch.randn(n, 5, 2, 2, generator=g).to(dtype)}
    paired = torch.tensor([True, False, True, False, False, True])[:n]
    return eps_s, eps_t, eps, paired, feats_s, feats_t, {"a": "A"}


@pytest.mark.parametrize("w", [LossWeights(1.0, 1.0, 0.0), LossWeights(0.5, 2.0, 3.0), LossWeights(1.0, 0.0, 1.0)])
def test_loss_composition(w):
    eps_s, eps_t, eps, paired, fs, ft, layer_map = _loss_inputs()
    out = distillation_loss(eps_s, eps_t, eps, paired, fs, ft, layer_map, w)
    assert torch.allclose(out["out"], ((eps_s - eps_t) ** 2).mean())
    assert torch.allclose(out["discrepancy"], ((eps_s - eps_t) ** 2).flatten(1).mean(1))
    assert torch.allclose(out["discrepancy"].mean(), out["out"])
    assert torch.allclose(out["feat"], ((fs["a"] - ft["A"]) ** 2).mean() if w.feat else torch.tensor(0.0))
    assert torch.allclose(out["sd"], ((eps_s[paired] - eps[paired]) ** 2).mean() if w.sd else torch.tensor(0.0))
    assert torch.allclose(out["loss"], w.out * out["out"] + w.feat * out["feat"] + w.sd * out["sd"])


def test_sd_loss_uses_only_paired_samples():
    eps_s, eps_t, eps, paired, fs, ft, layer_map = _loss_inputs()
    w = LossWeights(0.0, 0.0, 1.0)
    base = distillation_loss(eps_s, eps_t, eps, paired, fs, ft, layer_map, w)["sd"]
    changed = eps.clone()
    changed[~paired] += 100.0
    assert torch.equal(distillation_loss(eps_s, eps_t, changed, paired, fs, ft, layer_map, w)["sd"], base)
    changed[paired] += 1.0
    assert not torch.equal(distillation_loss(eps_s, eps_t, changed, paired, fs, ft, layer_map, w)["sd"], base)
    none = distillation_loss(eps_s, eps_t, eps, torch.zeros_like(paired), fs, ft, layer_map, w)
    assert none["sd"].item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_losses_are_fp32(dtype):
    args = _loss_inputs(dtype)
    out = distillation_loss(*args, LossWeights(1.0, 1.0, 1.0))
    assert all(v.dtype == torch.float32 for v in out.values())
    ref = distillation_loss(*(a.float() if a.is_floating_point() else a for a in args[:4]),
                            {k: v.float() for k, v in args[4].items()}, {k: v.float() for k, v in args[5].items()},
                            args[6], LossWeights(1.0, 1.0, 1.0))
    assert torch.equal(out["loss"], ref["loss"])  # upcast first, then the same fp32 arithmetic


def test_loss_gradient_reaches_student_only():
    eps_s, eps_t, eps, paired, fs, ft, layer_map = _loss_inputs()
    eps_s.requires_grad_(True)
    fs["a"].requires_grad_(True)
    eps_t.requires_grad_(True)
    distillation_loss(eps_s, eps_t, eps, paired, fs, ft, layer_map, LossWeights(1, 1, 1))["loss"].backward()
    assert eps_s.grad is not None and fs["a"].grad is not None and eps_t.grad is None
