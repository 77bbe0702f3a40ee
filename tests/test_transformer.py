"""The convolution + self-attention model (gradnap.asr.transformer): shapes, padding,
model files, training, the engines and the command line on tiny random models."""

from dataclasses import replace

import pytest
import torch

from gradnap.asr.config import MODEL_CONFIGS, ConvTransformerConfig
from gradnap.asr.model import build_model
from gradnap.asr.modelfile import load_model, read_model_file, save_model
from gradnap.asr.train import train_examples
from gradnap.asr.transformer import ConvTransformer
from gradnap.defaults import METHOD, NUM_CLASSES, TRAIN
from gradnap.engine import AutogradEngine, ReferenceEngine, default_layers, make_engine
from gradnap.errors import GradnapError
from helpers import assert_engines_agree, write_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

#: Front end kernels 5, 3 (stride 2, 1): a receptive field of 9 frames, one output frame
#: per 2 input frames; 2 blocks of width 8.
TINY = ConvTransformerConfig(
    "tiny-transformer",
    conv_channels=(6, 8),
    conv_kernels=(5, 3),
    conv_strides=(2, 1),
    position_kernel=5,
    num_blocks=2,
    heads=2,
    ff_dim=16,
    n_features=6,
    num_classes=5,
)
RF = 9


def tiny(seed: int = 0, **changes) -> ConvTransformer:
    torch.manual_seed(seed)
    return ConvTransformer(replace(TINY, **changes)).eval()


def test_the_shipped_config_and_its_layers():
    cfg = MODEL_CONFIGS["transformer"]
    model = build_model("transformer", seed=0)
    assert isinstance(model, ConvTransformer) and cfg.num_classes == NUM_CLASSES
    assert 2_000_000 < sum(p.numel() for p in model.parameters()) < 3_000_000
    assert default_layers(model) == [
        "input", "conv1", "conv2", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "head"
    ]  # fmt: skip
    assert model.pointwise_after == ("blocks.2", "blocks.3.attn")
    # frame tau is centred on input frame 3 tau + 1 (8 ms frames): 24 ms per output frame
    assert model.output_frame_seconds(10) == pytest.approx(31 * 0.008)
    widths, clock = model.window_layout(default_layers(model))
    # 0.5 s = 20.8 output frames -> 21 frames around t*, through the front end's geometry
    # (receptive field 29 input frames)
    assert METHOD.attention_window_seconds == 0.5
    assert widths == {
        "input": (29 + 20 * 3, 1.0), "conv1": (27, 3.0), "conv2": (21, 3.0),
        "blocks.0": (21, 3.0), "blocks.1": (21, 3.0), "blocks.2": (21, 3.0),
        "blocks.3": (1, 3.0), "head": (1, 3.0),
    }  # fmt: skip
    assert clock == (3.0, 1.0)


def test_shapes_lengths_and_short_input():
    model = tiny()
    for n in (RF, RF + 1, 40):
        y = model(torch.randn(2, 6, n))
        assert y.shape == (2, 5, model.geometry.output_length(n)) == (2, 5, (n - 3) // 2 + 1)
    assert model(torch.randn(1, 6, 3)).shape == (1, 5, 1)  # padded: fewer frames than RF
    with pytest.raises(GradnapError, match="input of 2 frames is too short for the front end"):
        model(torch.randn(1, 6, 2))
    with pytest.raises(GradnapError, match=r"expected \(batch, 6, frames\)"):
        model(torch.randn(1, 7, 40))
    with pytest.raises(GradnapError, match="multiple of"):
        replace(TINY, heads=3)


def test_forward_padded_equals_each_utterance_alone():
    model = tiny(1)
    lengths = torch.tensor([57, 20, 3])
    x = torch.randn(3, 6, 57) * (torch.arange(57) < lengths[:, None])[:, None, :]
    logits, out_lens = model.forward_padded(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[b : b + 1, :, :n])[0]
        assert out_lens[b] == alone.shape[1]
        torch.testing.assert_close(logits[b, :, : out_lens[b]], alone, rtol=1e-5, atol=1e-5)
        assert not logits[b, :, out_lens[b] :].any()


def test_model_file_round_trip(tmp_path):
    model = tiny(2, num_classes=NUM_CLASSES, n_features=128)
    model.metadata = {"note": "x"}
    path = save_model(tmp_path / "t.pt", model)
    assert read_model_file(path)["architecture"] == "conv-transformer"
    loaded = load_model(path)
    assert isinstance(loaded, ConvTransformer) and loaded.config == model.config
    assert loaded.metadata == {"note": "x"} and not loaded.training
    x = torch.randn(1, 128, 50)
    assert torch.equal(loaded(x), model(x))
    half = load_model(save_model(tmp_path / "h.pt", model, dtype=torch.float16))
    torch.testing.assert_close(half(x), model(x), rtol=0.05, atol=0.05)
    # a file of an unknown architecture, and a config of the wrong one
    blob = read_model_file(path)
    torch.save(dict(blob, architecture="lstm"), tmp_path / "u.pt")
    with pytest.raises(GradnapError, match="u.pt: unknown architecture 'lstm'"):
        load_model(tmp_path / "u.pt")
    torch.save(dict(blob, architecture="wav2letter"), tmp_path / "w.pt")
    with pytest.raises(GradnapError, match="w.pt: unknown model config fields"):
        load_model(tmp_path / "w.pt")


def test_old_model_files_without_an_architecture_load_as_wav2letter(tmp_path):
    from gradnap.asr.model import Wav2Letter
    from helpers import tiny_model

    blob = read_model_file(save_model(tmp_path / "w.pt", tiny_model()))
    assert blob.pop("architecture") == "wav2letter"
    torch.save(blob, tmp_path / "old.pt")
    assert isinstance(load_model(tmp_path / "old.pt"), Wav2Letter)


def test_training_leaves_the_blank_plateau_and_resumes(tmp_path):
    from test_train import toy_examples

    train_set, valid_set = toy_examples(24), toy_examples(4, seed=1)
    cfg = replace(TRAIN, epochs=3, lr=3e-3, warmup_steps=2, max_frames=400, max_batch=4, seed=5)
    config = replace(TINY, n_features=128, num_classes=NUM_CLASSES, conv_channels=(16, 16))
    full = train_examples(
        train_set, valid_set, config, tmp_path / "a.pt", cfg, run_dir=tmp_path / "ra",
        progress=False,
    )  # fmt: skip
    losses = [h["train_loss"] for h in full.history]
    assert losses[-1] < 0.7 * losses[0]
    part = train_examples(
        train_set, valid_set, config, tmp_path / "b.pt", cfg, run_dir=tmp_path / "rb",
        progress=False, stop_after_batches=4,
    )  # fmt: skip
    assert part.interrupted
    resumed = train_examples(
        train_set, valid_set, config, tmp_path / "b.pt", cfg, run_dir=tmp_path / "rb",
        progress=False, resume=True,
    )  # fmt: skip
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert isinstance(load_model(tmp_path / "b.pt"), ConvTransformer)


def _every_layer(model):
    return ["input", *model.layer_info]


@pytest.mark.parametrize("blocks", [1, 2])
def test_autograd_engine_equals_the_reference_on_every_layer(blocks):
    model = tiny(3, num_blocks=blocks)
    assert make_engine(model).__class__ is AutogradEngine  # attention: not a chain
    every = _every_layer(model)
    g = torch.Generator().manual_seed(1)
    for n in (RF + 2, RF + 40 * 2 + 1):
        x = torch.randn(6, n, generator=g)
        ref = ReferenceEngine(model, every)
        for strategy in ("per_frame", "vjp", "batch", "auto"):
            eng = AutogradEngine(model, every, strategy=strategy, workers=2)
            assert_engines_agree(eng, ref, x)


def test_layers_above_the_last_attention_are_one_position_wide():
    model = tiny(4)
    layers = default_layers(model)
    eng, ref = AutogradEngine(model, layers, workers=0), ReferenceEngine(model, layers)
    x = torch.randn(6, 61, generator=torch.Generator().manual_seed(2))
    fwd, rfwd = eng.forward(x), ref.forward(x)
    frames = torch.tensor([3, 7, 3, 20, 7])
    classes = torch.tensor([0, 4, 2, 1, 3])
    got, want = eng.sensitivities(fwd, frames, classes), ref.sensitivities(rfwd, frames, classes)
    for name in layers:
        if name in ("blocks.1", "head"):
            w = got[name]
            assert w.grads.shape[2] == 1 and torch.equal(w.start, frames)
            full = want[name].grads[torch.arange(5), :, frames]
            torch.testing.assert_close(w.grads[:, :, 0], full, rtol=1e-4, atol=1e-7)
            rest = want[name].grads.clone()
            rest[torch.arange(5), :, frames] = 0
            assert float(rest.abs().max()) == 0.0
        else:
            torch.testing.assert_close(got[name].grads, want[name].grads, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_collect_report_and_eval_cli(tmp_path):
    from gradnap.cli import main
    from gradnap.method.result import Result

    model = tiny(5, num_classes=NUM_CLASSES, n_features=128)
    path = save_model(tmp_path / "t.pt", model)
    corpus = write_corpus(tmp_path / "corpus", n=3, seconds=[0.5, 0.3, 0.001])
    out = tmp_path / "r.npz"
    args = ["collect", "--model", str(path), "--corpus", str(corpus), "--out", str(out)]
    args += ["--groupings", "grapheme,phoneme", "--examples", "all", "--min-count", "1"]
    assert main([*args, "--no-progress", "--folds", "2"]) == 0
    result = Result.load(out)
    meta = result.meta
    assert result.layers == default_layers(model)
    assert meta.progress.utterances == 2 and meta.progress.skipped == 2  # too short, broken
    assert any("too short for the front end" in p for p in meta.problems)
    widths = {d.name: (d.width, d.jump, d.width_source) for d in meta.layers}
    assert widths["input"] == (9 + 30 * 2, 1.0, "model")  # 31 frames through the front end
    assert widths["blocks.0"] == (31, 2.0, "model") and widths["head"] == (1, 2.0, "model")
    assert meta.options.engine == "AutogradEngine" and meta.model.name == "tiny-transformer"
    groups = ["--input-groups", "HH,AH,L,OW"]  # the phones of the corpus
    rep = tmp_path / "rep"
    assert main(["report", str(out), "--out", str(rep), "--model", str(path), *groups]) == 0
    assert (rep / "index.html").stat().st_size > 1000
    assert main(["eval", "--model", str(path), "--corpus", str(corpus), "--no-progress"]) == 0
