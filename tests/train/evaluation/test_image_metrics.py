"""FID and CLIP score through torchmetrics with local weights only (aria_train/evaluation/image_metrics.py).

Everything is built here, offline: a tiny TorchScript feature network (the NVlabs calling
convention, uint8 NCHW in, (N, D) features with return_features=True), a tiny random CLIPModel
with a CLIPTokenizer from a hand-written BPE vocab.json / merges.txt and a PIL CLIP image
processor. The numbers are checked against direct numpy / scipy computations on the same
features and embeddings, and once end to end through `aria eval` on the tiny embedded world.
"""
import json
import socket
import string

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
from PIL import Image
from torch import nn

import aria_cli
from aria_train.evaluation import image_metrics as im
from test_teacher_eval import TINY, WORLD, students  # the tiny embedded world of the eval tests

# torch >= 2.10 deprecates TorchScript, the format NVlabs' detector comes in.
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("one_torch_thread")]


# ---------------------------------------------------------------- tiny networks


class NvlabsStyleNet(nn.Module):
    """Calling convention of NVlabs' inception-2015-12-05.pt: uint8 (N, 3, H, W) in [0, 255], any
    H, W; (N, 6) features with return_features=True, (N, 3) "logits" without."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6, 3)

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = images.to(torch.float32) / 127.5 - 1.0
        features = torch.tanh(self.conv(x)).mean(dim=(2, 3))
        if return_features:
            return features
        return self.head(features)


class PlainNet(nn.Module):
    """The generic convention: detector(uint8 images) -> (N, 4) features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images.to(torch.float32) / 255.0).amax(dim=(2, 3))


class BadNet(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(torch.float32)  # (N, 3, H, W): not (N, D)


def save_script(module: nn.Module, path):
    torch.manual_seed(0)
    module = type(module)()  # seeded weights
    torch.jit.script(module.eval()).save(str(path))
    return path


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    return {name: save_script(cls(), root / f"{name}.pt")
            for name, cls in (("nvlabs", NvlabsStyleNet), ("plain", PlainNet), ("bad", BadNet))}


def write_bpe_vocab(folder) -> None:
    """A CLIP-style byte-level BPE vocabulary: letters with and without the end-of-word marker,
    a few merges, the two special tokens."""
    letters = string.ascii_lowercase
    tokens = list(letters) + [c + "</w>" for c in letters] + ["th", "the</w>", "on</w>", "re", "red</w>"]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    merges = ["t h", "th e</w>", "o n</w>", "r e", "re d</w>"]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A random tiny CLIPModel + CLIPProcessor saved with save_pretrained (16 px images, 8-dim embeddings)."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    root = tmp_path_factory.mktemp("clip")
    vocab = root / "bpe"
    vocab.mkdir()
    write_bpe_vocab(vocab)
    tokenizer = CLIPTokenizer.from_pretrained(vocab, local_files_only=True)
    assert tokenizer.tokenize("the red") == ["the</w>", "red</w>"]  # the merges are used
    images = im._pil_image_processor_class()(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=96, **special),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=16, patch_size=8),
        projection_dim=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(config)
    folder = root / "clip"
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def image_set(seed: int, n: int = 40, size: int = 8) -> np.ndarray:
    """uint8 (n, size, size, 3): a random colour per image plus pixel noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 216, (n, 1, 1, 3))
    return np.clip(base + rng.integers(-40, 41, (n, size, size, 3)), 0, 255).astype(np.uint8)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Direct Fréchet distance of two (N, D) feature sets (covariance divisor N - 1)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(root)))


def table_of(groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"region": range(len(groups)), "region_name": [f"r{i}" for i in range(len(groups))],
                         "group": groups, "text": ["a red circle on the left"] * len(groups)})


# ---------------------------------------------------------------- FID


def test_detector_calling_convention(nets):
    nvlabs = im.load_fid_detector(nets["nvlabs"])
    plain = im.load_fid_detector(nets["plain"])
    assert nvlabs.return_features and not plain.return_features
    x = im.nchw(image_set(0, n=3))
    nvlabs.probe(x)
    plain.probe(x)
    assert (nvlabs.num_features, plain.num_features) == (6, 4)  # 6: the features, not the 3 logits
    out = nvlabs(x)
    assert out.dtype == torch.float64 and out.shape == (3, 6)
    torch.testing.assert_close(out, torch.jit.load(str(nets["nvlabs"]))(x, return_features=True).double(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="must return \\(N, D\\) features") as err:
        im.load_fid_detector(nets["bad"]).probe(x)
    assert len(str(err.value).splitlines()) == 1
    with pytest.raises(ValueError, match="failed on uint8 \\(2, 3, 2, 2\\) images") as err:
        plain(im.nchw(image_set(0, n=2, size=2)))  # a 3x3 convolution without padding on 2x2 images
    assert len(str(err.value).splitlines()) == 1


def test_fid_zero_on_itself_positive_on_shift_and_equal_to_direct_formula(nets):
    a, b = image_set(0), image_set(1)
    shifted = np.clip(a.astype(int) + 60, 0, 255).astype(np.uint8)
    groups = ["seen"] * 36 + ["unseen"] * 3 + ["under"]  # 'under' has 1 sample: no FID there
    setup = im.FidSetup(detector=im.load_fid_detector(nets["nvlabs"]), batch_size=16)
    table = im.fid_by_group(setup, {"teacher": a, "same": a.copy(), "shifted": shifted, "other": b}, table_of(groups))
    assert set(table["model"]) == {"same", "shifted", "other"}  # the teacher is the reference
    fid = table.set_index(["model", "group"])
    assert list(fid.loc["same"].index) == ["seen", "unseen", "under", "all"]
    assert fid.loc[("same", "all"), ["samples", "reference_samples", "regions"]].tolist() == [40, 40, 40]
    assert fid.loc[("same", "unseen"), "samples"] == 3 and np.isnan(fid.loc[("same", "under"), "fid"])
    for group in ("seen", "unseen", "all"):
        assert abs(fid.loc[("same", group), "fid"]) < 1e-8
    assert fid.loc[("shifted", "all"), "fid"] > 0.05  # brighter images move the feature mean
    assert fid.loc[("shifted", "all"), "fid"] > 1e6 * abs(fid.loc[("same", "all"), "fid"])

    # Exactly the Fréchet distance of the detector's features (float64 throughout; rtol 1e-7).
    net = torch.jit.load(str(nets["nvlabs"]))
    with torch.no_grad():
        feats = {k: net(im.nchw(v), return_features=True).double().numpy() for k, v in
                 {"a": a, "b": b, "shifted": shifted}.items()}
    np.testing.assert_allclose(fid.loc[("other", "all"), "fid"], frechet(feats["b"], feats["a"]), rtol=1e-7)
    np.testing.assert_allclose(fid.loc[("shifted", "all"), "fid"], frechet(feats["shifted"], feats["a"]), rtol=1e-7)
    np.testing.assert_allclose(fid.loc[("other", "seen"), "fid"], frechet(feats["b"][:36], feats["a"][:36]), rtol=1e-7)


def test_fid_against_a_folder_of_images(nets, tmp_path):
    a = image_set(0, n=12)
    for i, img in enumerate(a):
        Image.fromarray(img).save(tmp_path / f"{i:03d}.png")
    Image.fromarray(image_set(5, n=1, size=11)[0]).save(tmp_path / "zz_other_size.jpg")  # its own batch
    (tmp_path / "notes.txt").write_text("not an image")
    files = im.reference_files(tmp_path)
    assert len(files) == 13
    setup = im.FidSetup(detector=im.load_fid_detector(nets["plain"]), batch_size=5)
    shifted = np.clip(a.astype(int) - 50, 0, 255).astype(np.uint8)
    table = im.fid_by_group(setup, {"teacher": a, "shifted": shifted}, table_of(["seen"] * 12), reference=files)
    assert table["model"].tolist() == ["teacher", "shifted"] and set(table["reference_samples"]) == {13}
    net = torch.jit.load(str(nets["plain"]))
    with torch.no_grad():
        ref = np.concatenate([net(im.nchw(a)).double().numpy(),
                              net(im.nchw(np.array(Image.open(files[-1]))[None])).double().numpy()])
        teacher = net(im.nchw(a)).double().numpy()
    np.testing.assert_allclose(table["fid"].iloc[0], frechet(teacher, ref), rtol=1e-7)
    assert table["fid"].iloc[1] > table["fid"].iloc[0]


# ---------------------------------------------------------------- CLIP score


def direct_cosines(folder, images: np.ndarray, texts: list[str]) -> np.ndarray:
    """cos(image embedding, text embedding) per pair, computed with transformers alone."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    processor = im._pil_image_processor_class().from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    pixels = processor(images=list(im.nchw(images)), return_tensors="pt")["pixel_values"]
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixels)
        txt = model.get_text_features(**tokens)
    img, txt = [getattr(x, "pooler_output", x) for x in (img, txt)]
    return torch.nn.functional.cosine_similarity(img, txt, dim=-1).numpy()


def test_clip_score_matches_direct_computation(clip_folder):
    images = image_set(3, n=10)
    texts = ["a red circle on the left", "the blue square", "green triangle at the top", "a white disk",
             "red", "the", "a small cross", "purple box on the right", "a big red circle", "on the grey background"]
    metric = im.clip_metric(clip_folder)
    cos = direct_cosines(clip_folder, images, texts)
    assert (cos > 0).any() and (cos < 0).any()  # both branches of the clip at 0 are exercised
    per_pair = np.array([im.clip_score(metric, images[i : i + 1], texts[i : i + 1]) for i in range(10)])
    np.testing.assert_allclose(per_pair, 100 * np.maximum(cos, 0), rtol=0, atol=1e-4)
    assert np.isfinite(per_pair).all() and (0 <= per_pair).all() and (per_pair <= 100).all()
    # A set's score is max(100 * mean cosine, 0), in batches or not.
    whole = im.clip_score(metric, images, texts, batch_size=3)
    np.testing.assert_allclose(whole, max(100 * cos.mean(), 0.0), rtol=0, atol=1e-4)

    regions = [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    per_region = im.clip_by_region(metric, images, table_of(["seen"] * 5 + ["unseen"] * 5).assign(
        region=regions, region_name=[f"r{r}" for r in regions], text=texts))
    assert per_region["n"].tolist() == [2, 3, 2, 3]
    expect = [max(100 * cos[s].mean(), 0.0) for s in (slice(0, 2), slice(2, 5), slice(5, 7), slice(7, 10))]
    np.testing.assert_allclose(per_region["clip_score"], expect, rtol=0, atol=1e-4)


def test_networks_load_without_any_connection(clip_folder, nets, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model, processor = im.load_clip(clip_folder)
    assert type(processor.image_processor).__name__ in ("CLIPImageProcessorPil", "CLIPImageProcessor")
    assert im.clip_metric(clip_folder) is not None and im.load_fid_detector(nets["nvlabs"]).return_features


def test_bad_paths_are_one_line_value_errors(tmp_path, clip_folder):
    (tmp_path / "junk.pt").write_bytes(b"not a TorchScript archive")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "state_dict.pt")
    (tmp_path / "broken_clip").mkdir()
    (tmp_path / "broken_clip" / "config.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    cases = [
        (lambda: im.load_fid_detector(tmp_path / "missing.pt"), "file not found"),
        (lambda: im.load_fid_detector(tmp_path / "junk.pt"), "not a TorchScript file"),
        (lambda: im.load_fid_detector(tmp_path / "state_dict.pt"), "not a TorchScript file"),
        (lambda: im.load_clip(tmp_path / "nothing"), "config.json not found"),
        (lambda: im.load_clip(tmp_path / "broken_clip"), "cannot load"),
        (lambda: im.reference_files(tmp_path / "nothing"), "folder not found"),
        (lambda: im.reference_files(tmp_path / "empty"), "needs >= 2"),
        (lambda: im.check_torch_fidelity_weights(tmp_path / "missing.pth"), "file not found"),
    ]
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:  # optional: without it, the weights option says so in one line
        cases.append((lambda: im.check_torch_fidelity_weights(tmp_path / "state_dict.pt"), "needs torch-fidelity"))
    for call, message in cases:
        with pytest.raises(ValueError) as err:
            call()
        assert message in str(err.value) and len(str(err.value).splitlines()) == 1, str(err.value)


# ---------------------------------------------------------------- `aria eval`


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(teacher folder, held-out parquet): the eval tests' 3-step teacher of the 9-region world."""
    from aria_train.worlds import World, WorldConfig

    root = tmp_path_factory.mktemp("world")
    (root / "world.json").write_text(json.dumps(WORLD))
    assert aria_cli.main(["teacher", "--out", str(root / "teacher"), "--world", str(root / "world.json"), *TINY,
                          "--steps", "3", "--batch-size", "4", "--warmup-steps", "1", "--log-every", "2",
                          "--eval-per-region", "1", "--eval-steps", "2", "--no-progress"]) == 0
    World(WorldConfig(**WORLD)).tables()["heldout"].to_parquet(root / "heldout.parquet")
    return root / "teacher", root / "heldout.parquet"


def test_eval_reports_fid_and_clip_score(world, nets, clip_folder, tmp_path, capsys):
    teacher, heldout = world
    copy, run = students((teacher, None), tmp_path)
    out = tmp_path / "eval"
    base = ["eval", "--teacher", teacher, "--student", copy, "--student", run, "--heldout", heldout,
            "--samples-per-region", "1", "--steps", "2", "--timesteps", "500"]
    assert aria_cli.main([str(a) for a in [*base, "--out", out, "--fid-detector", nets["nvlabs"],
                                           "--clip-model", clip_folder]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["fid"]) == {"copy", "run"} and set(results["clip_score"]) == {"teacher", "copy", "run"}
    fid = {m: {g["group"]: g for g in v["groups"]} for m, v in results["fid"].items()}
    # 9 regions x 1 sample: seen 7, unseen 1 and under 1 (too few for FID: null), all 9.
    assert {g: fid["copy"][g]["samples"] for g in fid["copy"]} == {"seen": 7, "unseen": 1, "under": 1, "all": 9}
    assert fid["copy"]["unseen"]["fid"] is None and fid["copy"]["all"]["reference_samples"] == 9
    # The identical student draws the teacher's very samples: FID 0 and the same CLIP scores.
    assert abs(fid["copy"]["all"]["fid"]) < 1e-8 and abs(fid["copy"]["seen"]["fid"]) < 1e-8
    assert fid["run"]["all"]["fid"] > 1e-6
    clip = results["clip_score"]
    assert clip["copy"]["per_region"] == clip["teacher"]["per_region"]
    assert len(clip["run"]["per_region"]) == 9
    assert all(0.0 <= r["clip_score"] <= 100.0 and r["n"] == 1 for r in clip["run"]["per_region"])
    assert results["image_metrics"]["fid_reference"].startswith("teacher samples")
    assert results["image_metrics"]["clip_model"] == str(clip_folder.resolve())
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["metric"]) == {"discrepancy", "discrepancy_pt", "accuracy", "fid", "clip_score"}  # no t >= 700: no text view
    rows = summary[(summary["metric"] == "fid") & (summary["model"] == "run")].set_index("group")
    assert rows.loc["all", "samples"] == 9 and rows.loc["all", "mean"] == pytest.approx(fid["run"]["all"]["fid"])
    assert np.isnan(rows.loc["unseen", "mean"])
    assert set(summary[summary["metric"] == "clip_score"]["model"]) == {"teacher", "copy", "run"}
    printed = capsys.readouterr().out
    assert "fid" in printed and "(9 samples)" in printed and "clip_score" in printed

    # Bad paths: one line, exit 2, nothing written (checked before anything is sampled).
    for extra, message in [(["--fid-detector", tmp_path / "missing.pt"], "file not found"),
                           (["--clip-model", tmp_path], "config.json not found"),
                           (["--fid-reference", tmp_path], "needs --fid-detector"),
                           (["--clip-model", clip_folder, "--samples-per-region", "0"], "--samples-per-region")]:
        bad = tmp_path / "bad"
        assert aria_cli.main([str(a) for a in [*base, "--out", bad, *extra]]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("aria: error:") and message in err and len(err.splitlines()) == 1, err
        assert not bad.exists() and not list(tmp_path.glob(".bad.tmp-*"))
