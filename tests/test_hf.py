"""Hugging Face transformers CTC models (gradnap.asr.hf) through the engines and the CLI.

Tiny randomly initialised Wav2Vec2ForCTC, HubertForCTC and WavLMForCTC models are built
from configs here and saved with hand-written tokenizer and feature-extractor files;
nothing is downloaded.
"""

import json
import logging
import os

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never the network
transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (the 'hf' extra)"
)

from gradnap.asr.hf import (  # noqa: E402
    MISSING_LOGIT,
    HFCTCModel,
    load_hf_model,
    vocabulary_from_tokens,
)
from gradnap.asr.modelfile import load_model  # noqa: E402
from gradnap.defaults import ALPHABET, BLANK_INDEX, FeatureConfig  # noqa: E402
from gradnap.engine import (  # noqa: E402
    AutogradEngine,
    ReferenceEngine,
    default_layers,
    layer_names,
    make_engine,
)
from gradnap.errors import GradnapError  # noqa: E402
from gradnap.features import waveform_input  # noqa: E402
from gradnap.method import GradNAP, Result, merge_results  # noqa: E402
from gradnap.method.spectrum import SPECTRUM_LAYER, spectrum_aligned, spectrum_layout  # noqa: E402
from gradnap.method.windows import Aligned  # noqa: E402
from helpers import assert_engines_agree, write_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

#: The token layout of the published English wav2vec 2.0 CTC checkpoints (upper case).
TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]
KINDS = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2ForCTC"),
    "hubert": ("HubertConfig", "HubertForCTC"),
    "wavlm": ("WavLMConfig", "WavLMForCTC"),
}
#: Front end: kernels 10, 4, 4, strides 5, 4, 4: a receptive field of 85 samples, one
#: output frame per 80 samples (5 ms); a positional convolution of 8 frames.
TINY = dict(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=32,
    conv_dim=(8, 8, 8),
    conv_kernel=(10, 4, 4),
    conv_stride=(5, 4, 4),
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2,
    vocab_size=len(TOKENS),
    pad_token_id=0,
)
RF, STRIDE = 85, 80


def save_checkpoint(
    path,
    kind="wav2vec2",
    seed=0,
    tokens=TOKENS,
    tokenizer=None,
    preprocessor=None,
    **config,
):
    """A random ``kind`` CTC model saved to ``path`` with its tokenizer files; returns path."""
    cfg_cls, model_cls = (getattr(transformers, n) for n in KINDS[kind])
    torch.manual_seed(seed)
    model = model_cls(cfg_cls(**{**TINY, "vocab_size": len(tokens), **config})).eval()
    model.save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    tok = {
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "word_delimiter_token": "|",
        "do_lower_case": False,
        "tokenizer_class": "Wav2Vec2CTCTokenizer",
    }
    (path / "tokenizer_config.json").write_text(json.dumps({**tok, **(tokenizer or {})}))
    special = {k: tok[k] for k in ("pad_token", "unk_token", "bos_token", "eos_token")}
    (path / "special_tokens_map.json").write_text(json.dumps(special))
    pre = {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "sampling_rate": 16000,
        "padding_value": 0.0,
        "do_normalize": True,
        "return_attention_mask": False,
    }
    (path / "preprocessor_config.json").write_text(json.dumps({**pre, **(preprocessor or {})}))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {kind: save_checkpoint(root / kind, kind) for kind in KINDS}
    out["wav2vec2-stable"] = save_checkpoint(
        root / "stable", "wav2vec2", do_stable_layer_norm=True, feat_extract_norm="layer"
    )
    return out


def _hf_logits(model: HFCTCModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.hf(input_values=x[:, 0]).logits  # (B, T', V)


@pytest.mark.parametrize("kind", list(KINDS))
def test_loads_each_class_with_its_vocabulary(checkpoints, kind, caplog):
    with caplog.at_level(logging.WARNING, logger="gradnap.asr.hf"):
        model = load_model(checkpoints[kind])
    assert isinstance(model, HFCTCModel) and not model.training
    assert type(model.hf).__name__ == KINDS[kind][1]
    assert model.features == FeatureConfig(input="waveform")
    # unknown tokens are kept and reported, never dropped
    assert "'<s>', 30: '</s>', 31: '<unk>'" in caplog.text
    assert model.metadata["unknown_tokens"] == ["<s>", "</s>", "<unk>"]
    x = torch.randn(1, 1, RF + 9 * STRIDE)
    with torch.no_grad():
        y = model(x)
    hf = _hf_logits(model, x)
    assert y.shape == (1, len(TOKENS), 10)
    index = {t: i for i, t in enumerate(TOKENS)}
    # letters of either case, the delimiter as space, the pad token as blank, then extras
    for k, ch in enumerate(ALPHABET):
        tok = {" ": "|"}.get(ch, ch.upper())
        torch.testing.assert_close(y[0, k], hf[0, :, index[tok]], rtol=0, atol=0)
    torch.testing.assert_close(y[0, BLANK_INDEX], hf[0, :, index["<pad>"]], rtol=0, atol=0)
    for j, tok in enumerate(["<s>", "</s>", "<unk>"]):
        torch.testing.assert_close(y[0, BLANK_INDEX + 1 + j], hf[0, :, index[tok]])
    assert model.labels[: BLANK_INDEX + 1] == (*"abcdefghijklmnopqrstuvwxyz", "_", "'", "<b>")
    assert model.labels[BLANK_INDEX + 1 :] == ("<s>", "</s>", "<unk>")
    prefix = model.hf.base_model_prefix
    assert default_layers(model) == [
        f"{prefix}.feature_extractor.conv_layers.2",
        f"{prefix}.encoder.layers.0",
        f"{prefix}.encoder.layers.1",
        "lm_head",
    ]
    # the head starts after the last attention block: its input and attention output
    enc = f"{prefix}.encoder.layers"
    assert model.pointwise_after == (f"{enc}.0", f"{enc}.1.attention")
    pointwise = {n for n, i in model.layer_info.items() if i.pointwise}
    assert {f"{enc}.1.feed_forward", f"{enc}.1", "lm_head"} <= pointwise
    assert not pointwise & {f"{enc}.0", f"{enc}.1.attention.v_proj"}
    assert isinstance(make_engine(model), AutogradEngine)


def test_missing_letters_lowercase_vocabulary_and_settings(tmp_path, caplog):
    tokens = ["<pad>", "|", *"abcdefghijklmnopqrstuvwxy", "0"]  # no z, no apostrophe
    path = save_checkpoint(
        tmp_path / "m",
        tokens=tokens,
        preprocessor={"do_normalize": False, "sampling_rate": 8000},
    )
    with caplog.at_level(logging.INFO, logger="gradnap.asr.hf"):
        model = load_hf_model(path)
    assert "has no 'z', \"'\"" in caplog.text and "29: '0'" in caplog.text
    assert model.features == FeatureConfig(sample_rate=8000, normalize="none", input="waveform")
    x = torch.randn(1, 1, 1000)
    with torch.no_grad():
        y = model(x)
    z, apostrophe = ALPHABET.index("z"), ALPHABET.index("'")
    assert bool((y[0, [z, apostrophe]] == MISSING_LOGIT).all())
    probs = torch.softmax(y, dim=1)
    assert float(probs[0, [z, apostrophe]].max()) == 0.0  # never predicted
    torch.testing.assert_close(y[0, ALPHABET.index("a")], _hf_logits(model, x)[0, :, 2])


def test_unusable_checkpoints_say_what_is_wrong(tmp_path):
    path = save_checkpoint(tmp_path / "nopad", tokens=["|", *"abc"])
    with pytest.raises(GradnapError, match=r"vocab.json: the pad token '<pad>'"):
        load_model(path)
    path = save_checkpoint(tmp_path / "missing")
    (path / "vocab.json").unlink()
    with pytest.raises(GradnapError, match=r"vocab.json: missing"):
        load_model(path)
    path = save_checkpoint(tmp_path / "big")
    (path / "vocab.json").write_text(json.dumps({"<pad>": 0, "a": 99}))
    with pytest.raises(GradnapError, match=r"token 'a' has index 99; the model has 32"):
        load_model(path)
    (path / "config.json").write_text(json.dumps({"architectures": ["Wav2Vec2ForPreTraining"]}))
    with pytest.raises(GradnapError, match="not a CTC model"):
        load_model(path)
    with pytest.raises(GradnapError, match="no config.json"):
        load_model(tmp_path)


def test_waveform_input_is_the_feature_extractors(checkpoints):
    g = torch.Generator().manual_seed(0)
    samples = (0.1 * torch.randn(3000, generator=g) + 0.02).numpy()
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(
        str(checkpoints["wav2vec2"]), local_files_only=True
    )
    want = fe(samples, sampling_rate=16000, return_tensors="pt").input_values  # (1, N)
    got = waveform_input(samples, FeatureConfig(input="waveform"))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    raw = waveform_input(samples, FeatureConfig(input="waveform", normalize="none"))
    torch.testing.assert_close(raw[0], torch.from_numpy(samples))


def test_frame_geometry_from_the_config(checkpoints):
    model = load_model(checkpoints["wav2vec2"])
    assert model.receptive_field == RF and model.frontend.output_stride == STRIDE
    info = model.layer_info
    conv0 = info["wav2vec2.feature_extractor.conv_layers.0"]
    assert (conv0.stage, conv0.jump, conv0.time_major) == (1, 5.0, False)
    assert not info["wav2vec2.feature_extractor.conv_layers.2"].time_major
    assert info["wav2vec2.encoder.layers.0"].time_major
    assert info["wav2vec2.encoder.layers.0"].jump == STRIDE
    assert not info["wav2vec2.encoder.layers.0"].pointwise
    assert info["wav2vec2.encoder.layers.1"].pointwise and info["lm_head"].pointwise
    assert not info["wav2vec2.encoder.layers.1.attention.q_proj"].pointwise
    # weight parametrizations and attention maps are no layers of positions
    assert "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight" not in info
    with pytest.raises(GradnapError, match="no sequence of positions"):
        AutogradEngine(model, ["wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight"])
    widths, (stride, offset) = model.window_layout(["input", *default_layers(model)])
    assert (stride, offset) == (STRIDE, (RF - 1) / 2)
    # 0.5 s = 100 output frames -> 101 (odd); through the front end for its layers
    assert widths["wav2vec2.encoder.layers.0"] == (101, 80.0)
    assert widths["wav2vec2.feature_extractor.conv_layers.2"] == (101, 80.0)
    assert widths["input"] == (RF + 100 * STRIDE, 1.0)
    assert widths["wav2vec2.encoder.layers.1"] == widths["lm_head"] == (1, 80.0)
    with pytest.raises(GradnapError, match=r"84 samples is shorter than .* \(85 samples, 5 ms\)"):
        model(torch.randn(1, 1, RF - 1))


def _every_layer(model):
    return [n for n in layer_names(model) if n == "input" or n in model.layer_info]


@pytest.mark.parametrize("kind", [*KINDS, "wav2vec2-stable"])
def test_engine_equals_the_reference_on_every_layer(checkpoints, kind):
    model = load_model(checkpoints[kind])
    every = _every_layer(model)
    g = torch.Generator().manual_seed(1)
    # one output frame (the receptive field), fewer frames than the positional
    # convolution's kernel, and longer
    for n in (RF, RF + 4 * STRIDE + 17, RF + 40 * STRIDE + 3):
        # one position: the softmax over one key is 1 whatever the query and key, so they
        # have no sensitivity (the reference's are rounding noise)
        layers = [name for name in every if n > RF or not name.endswith(("q_proj", "k_proj"))]
        ref = ReferenceEngine(model, layers)
        x = torch.randn(1, n, generator=g)
        for strategy in ("per_frame", "vjp", "auto"):
            eng = AutogradEngine(model, layers, strategy=strategy, workers=2)
            assert_engines_agree(eng, ref, x)
    ref = ReferenceEngine(model, every)
    # shorter than the front end's receptive field: no output frame, for both engines
    eng = AutogradEngine(model, every)
    for engine in (eng, ref):
        with pytest.raises(GradnapError, match="shorter than the front end's receptive field"):
            engine.forward(torch.randn(1, RF - 1, generator=g))


def test_head_windows_and_repeated_frames(checkpoints):
    model = load_model(checkpoints["wavlm"])
    layers = default_layers(model)
    eng, ref = AutogradEngine(model, layers, workers=0), ReferenceEngine(model, layers)
    x = torch.randn(1, RF + 20 * STRIDE, generator=torch.Generator().manual_seed(2))
    fwd, rfwd = eng.forward(x), ref.forward(x)
    frames = torch.tensor([3, 7, 3, 20, 7])
    classes = torch.tensor([0, BLANK_INDEX, 5, 1, 31])
    got, want = eng.sensitivities(fwd, frames, classes), ref.sensitivities(rfwd, frames, classes)
    for name in layers:
        w = got[name]
        if name in ("wavlm.encoder.layers.1", "lm_head"):  # after the last attention block
            assert w.grads.shape[2] == 1 and torch.equal(w.start, frames)
            full = want[name].grads[torch.arange(5), :, frames]  # (n, C)
            torch.testing.assert_close(w.grads[:, :, 0], full, rtol=1e-4, atol=1e-7)
            rest = want[name].grads.clone()
            rest[torch.arange(5), :, frames] = 0
            assert float(rest.abs().max()) == 0.0  # provably zero elsewhere
        else:
            torch.testing.assert_close(w.grads, want[name].grads, rtol=1e-4, atol=1e-7)


def test_a_head_that_mixes_positions_is_not_split(tmp_path, caplog):
    path = save_checkpoint(tmp_path / "m")
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(str(path), local_files_only=True)
    # a position-wise module type that mixes positions all the same (a functional roll)
    hf.dropout.register_forward_hook(lambda _m, _i, out: out + 0.5 * out.roll(1, dims=1))
    from gradnap.asr.hf import read_feature_config, read_vocabulary

    with caplog.at_level(logging.WARNING, logger="gradnap.asr.hf"):
        model = HFCTCModel(hf.eval(), read_vocabulary(path, 32), read_feature_config(path))
    assert model.pointwise_after is None and "not position-wise" in caplog.text
    layers = ["wav2vec2.encoder.layers.0", "wav2vec2.encoder.layers.1", "lm_head"]
    eng, ref = AutogradEngine(model, layers), ReferenceEngine(model, layers)
    assert_engines_agree(eng, ref, torch.randn(1, RF + 12 * STRIDE))


def test_a_bypass_of_the_attention_cut_moves_the_head_up(tmp_path, caplog):
    path = save_checkpoint(tmp_path / "m")
    hf = transformers.Wav2Vec2ForCTC.from_pretrained(str(path), local_files_only=True)
    # the last layer's feed-forward block also reads the encoder's input: a path from
    # below that passes neither the last layer's input nor its attention output
    kept = {}
    hf.wav2vec2.encoder.dropout.register_forward_hook(lambda _m, _i, out: kept.update(h=out))
    hf.wav2vec2.encoder.layers[1].feed_forward.register_forward_hook(
        lambda _m, _i, out: out + 0.5 * kept["h"]
    )
    from gradnap.asr.hf import read_feature_config, read_vocabulary

    with caplog.at_level(logging.INFO, logger="gradnap.asr.hf"):
        model = HFCTCModel(hf.eval(), read_vocabulary(path, 32), read_feature_config(path))
    assert "do not carry all of the output's dependence" in caplog.text
    assert model.pointwise_after == ("wav2vec2.encoder.layers.1",)
    layers = _every_layer(model)
    eng, ref = AutogradEngine(model, layers), ReferenceEngine(model, layers)
    assert_engines_agree(eng, ref, torch.randn(1, RF + 12 * STRIDE))


def test_layer_outputs_are_presented_channel_major(checkpoints):
    model = load_model(checkpoints["hubert"])
    eng = AutogradEngine(model, ["hubert.encoder.layers.0", "hubert.feature_projection"])
    x = torch.randn(1, RF + 9 * STRIDE)
    fwd = eng.forward(x)
    with torch.no_grad():
        hidden = model.hf(input_values=x, output_hidden_states=True).hidden_states
    torch.testing.assert_close(fwd.activations["hubert.encoder.layers.0"], hidden[1][0].T)
    assert fwd.activations["hubert.feature_projection"].shape == (16, 10)


@pytest.mark.slow
def test_collect_and_report_cli(checkpoints, tmp_path):
    from gradnap.cli import main
    from gradnap.method.result import Result

    corpus = write_corpus(tmp_path / "corpus", n=3, seconds=[0.5, 0.3, 0.004])
    model = str(checkpoints["wav2vec2"])
    out = tmp_path / "r.npz"
    layers = "input,wav2vec2.feature_extractor.conv_layers.2,wav2vec2.encoder.layers.1,lm_head"
    args = ["collect", "--model", model, "--corpus", str(corpus), "--out", str(out)]
    args += ["--layers", layers, "--groupings", "grapheme,phoneme", "--examples", "all"]
    assert main([*args, "--min-count", "1", "--no-progress", "--folds", "2"]) == 0
    result = Result.load(out)
    meta = result.meta
    assert meta.progress.utterances == 2 and meta.progress.skipped >= 1  # the too short one
    assert any("shorter than the front end's receptive field" in p for p in meta.problems)
    widths = {d.name: (d.width, d.jump, d.width_source) for d in meta.layers}
    assert widths == {
        "input": (RF + 100 * STRIDE, 1.0, "model"),
        SPECTRUM_LAYER: (49, 160.0, "spectrum"),  # ±240 ms of 10 ms hops
        "wav2vec2.feature_extractor.conv_layers.2": (101, 80.0, "model"),
        "wav2vec2.encoder.layers.1": (1, 80.0, "model"),
        "lm_head": (1, 80.0, "model"),
    }
    assert meta.options.frame_seconds == 1 / 16000 and meta.options.engine == "AutogradEngine"
    assert meta.model.source == model
    groups = ["--input-groups", "HH,AH,L,OW"]  # the phones of the corpus
    assert (
        main(["report", str(out), "--out", str(tmp_path / "rep"), "--model", model, *groups]) == 0
    )
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Input spectrum (waveform model)" in html and "25 ms Hann frames every 10 ms" in html
    assert (tmp_path / "rep" / "input_spectrum.png").stat().st_size > 10_000
    assert "optimal inputs are spectrogram windows" in html  # named, not drawn
    png = tmp_path / "input.png"
    assert main(["plot", "input", str(out), "--out", str(png), "--groups", "AH,OW"]) == 0
    assert png.stat().st_size > 10_000
    action = ["plot", "action", str(out), "--out", str(tmp_path / "a.png"), "--group", "AH"]
    assert main([*action, "--layer", "lm_head", "--model", model]) == 0  # no optimal input
    # gradnap's evaluation (CER) runs on it too
    assert main(["eval", "--model", model, "--corpus", str(corpus), "--no-progress"]) == 0
    # the default layers, grapheme only
    out2 = tmp_path / "d.npz"
    args = ["collect", "--model", model, "--corpus", str(corpus), "--out", str(out2)]
    assert main([*args, "--no-progress", "--min-count", "1"]) == 0
    assert Result.load(out2).layers == default_layers(load_model(model))


def test_extra_tokens_have_distinct_labels():
    vocab = {"<pad>": 0, "|": 1, "a": 2, "A": 3, "_": 4, "": 5, "<unk>": 6, "7": 7}
    labels = vocabulary_from_tokens(vocab, 8).labels()
    assert labels[BLANK_INDEX + 1 :] == ("A", "_#30", "#31", "<unk>", "7")
    assert len(set(labels)) == len(labels)


@pytest.fixture(scope="module")
def waveform_run(checkpoints):
    """The tiny wav2vec 2.0 model, three utterances of noise as its input and a
    collection with the waveform input layer: ``(model, data, result)``; a function
    grouping ``one`` holds a single example."""
    model = load_model(checkpoints["wav2vec2"])
    rng = np.random.default_rng(0)
    data = [
        (f"u{i}", waveform_input(rng.normal(0, 0.1, n).astype("float32"), model.features))
        for i, n in enumerate((8000, 4800, 6400))
    ]
    return model, data, _collect_on(model, data, threads=1)


def _collect_on(model, data, threads):
    """The collection of ``_waveform_gradnap`` with ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _waveform_gradnap(model).collect(data, progress=False)
    finally:
        torch.set_num_threads(before)


def _one(utterance, frame, cls):
    return "x" if (utterance, frame) == ("u1", 20) else None


def _waveform_gradnap(model):
    layers = ["input", "wav2vec2.encoder.layers.1", "lm_head"]
    # a fixed strategy: "auto" picks by timing, and the strategies round differently
    engine = AutogradEngine(model, layers, strategy="per_frame")
    return GradNAP(
        model, layers, engine=engine, groupings=["grapheme", ("one", _one)], examples="all",
        min_count=1, folds=2,
    )  # fmt: skip


def test_a_fixed_strategy_is_the_same_for_any_thread_count(waveform_run):
    """The forward pass on one thread, the backward passes on single-threaded workers:
    two threads (and two workers) give the one-thread run's sums bit for bit."""
    model, data, one = waveform_run
    two = _collect_on(model, data, threads=2)
    assert one.arrays.keys() == two.arrays.keys()
    for key, value in one.arrays.items():
        assert np.array_equal(two.arrays[key], value), key


def test_waveform_input_is_summed_as_a_spectrum(waveform_run):
    model, _, result = waveform_run
    assert result.layers == ["input", SPECTRUM_LAYER, "wav2vec2.encoder.layers.1", "lm_head"]
    info = result.layer_info(SPECTRUM_LAYER)
    assert (info.channels, info.width, info.jump, info.width_source) == (201, 49, 160.0, "spectrum")
    axes = result.axes(SPECTRUM_LAYER)
    np.testing.assert_allclose(axes.offsets_ms, np.arange(-240.0, 241.0, 10.0))
    np.testing.assert_allclose(axes.frequencies_hz, np.arange(201) * 40.0)
    # the single example of grouping "one": its spectrum sums are the spectra of its
    # aligned input window (the input layer's sums of a group of one)
    counts = result.counts("one")
    assert counts == {"x": 1}
    arrays = result.arrays
    act, grad = (arrays[f"sums/one/input/{f}"][:1] for f in ("act_sum", "grad_sum"))
    valid = torch.from_numpy(arrays["sums/one/input/count"][:1] > 0)
    width = result.layer_info("input").width
    one = Aligned(
        torch.from_numpy(act).float(),
        torch.from_numpy(grad).float(),
        valid,
        torch.tensor([width // 2]),
        torch.zeros(1, 1, dtype=torch.float64),
        False,
    )
    want = spectrum_aligned(one, spectrum_layout(width, 16000))
    got = {f: arrays[f"sums/one/{SPECTRUM_LAYER}/{f}"][0] for f in ("act_sum", "grad_sum", "count")}
    np.testing.assert_allclose(got["act_sum"], want.act[0].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got["grad_sum"], want.grad[0].numpy(), rtol=1e-5, atol=1e-12)
    assert np.array_equal(got["count"], want.valid[0].numpy())
    assert float(np.abs(got["grad_sum"]).max()) > 0
    # profiles: the dataset against itself is 0 dB; NAvAI and the dB view on this layer
    group = max(result.groups("grapheme"), key=result.counts("grapheme").get)
    rel = result.profile(SPECTRUM_LAYER, group, "grapheme", kind="sensitivity_db")
    assert rel.shape == (201, 49) and np.isfinite(rel).all() and np.abs(rel).max() > 0
    assert np.abs(result.profile(SPECTRUM_LAYER, "all", kind="sensitivity_db")).max() < 1e-9
    assert result.profile(SPECTRUM_LAYER, group, "grapheme", kind="navai").shape == (201, 49)
    with pytest.raises(GradnapError, match="sensitivity_db is defined for the 'input.spectrum'"):
        result.profile("input", group, "grapheme", kind="sensitivity_db")
    # extra tokens of the vocabulary are labelled by their text, not the class index
    labels = result.labels("grapheme")
    assert {"<s>", "</s>"} & set(labels) and not any(label.isdigit() for label in labels)


def test_the_spectrum_merges_and_resumes_like_any_layer(waveform_run, tmp_path):
    model, data, whole = waveform_run
    shards = [_waveform_gradnap(model).collect(data, shard=(i, 2), progress=False) for i in (0, 1)]
    merged = merge_results(shards)
    for g in ("grapheme", "all"):
        rows = [merged.labels(g).index(label) for label in whole.labels(g)]  # by label
        for key, value in whole.arrays.items():
            if key.startswith(f"sums/{g}/") and not key.endswith("/labels"):
                np.testing.assert_allclose(merged.arrays[key][rows], value, rtol=1e-12, err_msg=key)

    def crashing():
        for i, item in enumerate(data):
            if i == 2:
                raise KeyboardInterrupt
            yield item

    ckpt = tmp_path / "run.ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        _waveform_gradnap(model).collect(
            crashing(), checkpoint=ckpt, checkpoint_every=1, progress=False
        )
    assert Result.load(ckpt).meta.progress.items_done >= 1
    resumed = _waveform_gradnap(model).collect(data, checkpoint=ckpt, resume=True, progress=False)
    for key, value in whole.arrays.items():
        assert np.array_equal(resumed.arrays[key], value), key  # bit for bit


def test_report_of_a_waveform_model_in_python(waveform_run, tmp_path, caplog):
    from gradnap.defaults import ReportConfig
    from gradnap.report import build_report
    from gradnap.report.paper import input_figure

    model, _, result = waveform_run
    counts = result.counts("grapheme")
    groups = tuple(sorted(counts, key=counts.get, reverse=True)[:2])
    fig = input_figure(result, groups, "grapheme")
    axes = fig.axes[:6]  # the heatmaps, then their colour bars
    assert len(axes) == 6  # 2 groups x (sensitivity, GradNAP, input)
    assert all(ax.get_ylabel() == "frequency (Hz)" for ax in axes)
    assert axes[-1].get_xlabel() == "time relative to alignment (ms)"
    ticks = [t.get_text() for t in axes[0].get_yticklabels()]
    assert ticks[:3] == ["0", "1000", "2000"] and ticks[-1] == "8000"
    assert axes[0].get_xlim() == pytest.approx((-245.0, 245.0))
    # build_report with the HF model: the optimal inputs are skipped with the reason
    config = ReportConfig(
        input_groups=groups, input_grouping="grapheme", action_groups=groups[:1],
        action_grouping="grapheme", dendrogram_grouping="grapheme",
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="gradnap.report.paper"):
        index = build_report(result, tmp_path / "rep", model=model, config=config)
    assert "no optimal inputs: optimal inputs are spectrogram windows" in caplog.text
    html = index.read_text()
    assert "optimal inputs: optimal inputs are spectrogram windows" in html
    assert (tmp_path / "rep" / "input_spectrum.png").is_file()
    assert (tmp_path / "rep" / f"action_potentials_lm_head_{groups[0]}.png").is_file()


def test_forward_padded_equals_each_utterance_alone(checkpoints):
    model = load_model(checkpoints["wav2vec2-stable"])
    lengths = torch.tensor([RF + 40 * STRIDE, RF + 7 * STRIDE + 13])
    torch.manual_seed(0)
    x = torch.zeros(2, 1, int(lengths.max()))
    for b, n in enumerate(lengths.tolist()):
        x[b, :, :n] = torch.randn(1, n)
    with torch.no_grad():
        logits, out_lens = model.forward_padded(x, lengths)
        assert out_lens.tolist() == [41, 8]
        for b, n in enumerate(lengths.tolist()):
            alone = model(x[b : b + 1, :, :n])
            torch.testing.assert_close(
                logits[b : b + 1, :, : out_lens[b]], alone, atol=1e-4, rtol=0
            )
