from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from gradnap.asr import modelfile as ckpt
from gradnap.asr.config import MODEL_CONFIGS
from gradnap.asr.model import build_model
from gradnap.asr.modelfile import (
    TORCHAUDIO_PADDINGS,
    from_torchaudio_state_dict,
    load_model,
    read_model_file,
    save_model,
)
from gradnap.defaults import FEATURES
from gradnap.errors import GradnapError
from helpers import TINY


def test_round_trip(tmp_path):
    model = build_model(TINY, seed=3)
    path = save_model(tmp_path / "m.pt", model, metadata={"epochs": 7, "note": "x"})
    loaded = load_model(path)
    assert loaded.config == TINY
    assert loaded.features == FEATURES
    assert loaded.metadata == {"epochs": 7, "note": "x"}
    assert not loaded.training
    x = torch.randn(2, 128, 75)
    assert torch.equal(loaded(x), model(x))
    # no temporary files left behind
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_float16_weights_are_the_model(tmp_path):
    model = build_model(TINY, seed=3)
    f32 = save_model(tmp_path / "a.pt", model)
    f16 = save_model(tmp_path / "b.pt", model, dtype=torch.float16)
    assert f16.stat().st_size < 0.7 * f32.stat().st_size
    loaded = load_model(f16)
    for (k, w), (_, w16) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert w16.dtype == torch.float32
        assert torch.equal(w16, w.half().float()), k
    assert read_model_file(f16)["dtype"] == "float16"


def test_non_default_features_kept_and_checked(tmp_path):
    feats = replace(FEATURES, n_mels=64)
    cfg = replace(TINY, n_features=64)
    path = save_model(tmp_path / "m.pt", build_model(cfg), features=feats)
    assert load_model(path).features == feats
    assert load_model(path, features=feats).features == feats
    with pytest.raises(GradnapError, match="m.pt.*features"):
        load_model(path, features=FEATURES)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(GradnapError, match="nope.pt: model file not found"):
        load_model(tmp_path / "nope.pt")
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(GradnapError, match="text.pt: not a PyTorch checkpoint"):
        load_model(text)
    other = tmp_path / "other.pt"
    torch.save({"format": "something", "x": 1}, other)
    with pytest.raises(GradnapError, match="other.pt: not a gradnap checkpoint"):
        load_model(other)
    lst = tmp_path / "list.pt"
    torch.save([1, 2], lst)
    with pytest.raises(GradnapError, match="list.pt: not a checkpoint"):
        load_model(lst)


def _tamper(path, **changes):
    blob = torch.load(path, weights_only=True)
    blob.update(changes)
    torch.save(blob, path)


def test_wrong_alphabet_and_shape(tmp_path):
    model = build_model(TINY, seed=0)
    p = save_model(tmp_path / "alpha.pt", model)
    _tamper(p, alphabet=list("abc"))
    with pytest.raises(GradnapError, match="alpha.pt: alphabet"):
        load_model(p)
    p = save_model(tmp_path / "shape.pt", model)
    blob = torch.load(p, weights_only=True)
    cfg = dict(blob["config"])
    cfg["channels"] = [9] + cfg["channels"][1:]
    _tamper(p, config=cfg)
    with pytest.raises(GradnapError, match=r"shape.pt: layer1.conv.weight has shape"):
        load_model(p)
    p = save_model(tmp_path / "keys.pt", model)
    blob = torch.load(p, weights_only=True)
    blob["state_dict"].pop("layer3.conv.bias")
    torch.save(blob, p)
    with pytest.raises(GradnapError, match="keys.pt: weights do not match"):
        load_model(p)


def test_default_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(ckpt.SHIPPED_MODELS, "default", tmp_path / "default.pt")
    with pytest.raises(GradnapError, match="shipped 'default' model is missing.*train_default"):
        load_model("default")
    save_model(tmp_path / "default.pt", build_model(TINY))
    assert load_model("default").config == TINY


def test_bare_state_dict(tmp_path):
    model = build_model(TINY, seed=1)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = load_model(tmp_path / "sd.pt")
    x = torch.randn(1, 128, 60)
    assert torch.equal(loaded(x), model(x))


def torchaudio_layout(widths: tuple[int, ...], num_features: int = 128) -> nn.Module:
    """torchaudio's Wav2Letter (power_spectrum input) rebuilt: ``acoustic_model`` of
    Conv1d/ReLU pairs with its paddings, ReLU after the last layer, log_softmax output."""
    kernels = (48, 7, 7, 7, 7, 7, 7, 7, 32, 1, 1)
    layers = []
    in_ch = num_features
    for k, p, out in zip(kernels, TORCHAUDIO_PADDINGS, widths, strict=True):
        layers += [nn.Conv1d(in_ch, out, k, stride=2 if k == 48 else 1, padding=p), nn.ReLU()]
        in_ch = out

    class TA(nn.Module):
        def __init__(self):
            super().__init__()
            self.acoustic_model = nn.Sequential(*layers)

        def forward(self, x):
            return torch.log_softmax(self.acoustic_model(x), dim=1)

    return TA()


@pytest.mark.parametrize("widths", [(12,) * 8 + (20, 20, 29), (250,) * 8 + (2000, 2000, 29)])
def test_torchaudio_layout_same_outputs(tmp_path, widths):
    torch.manual_seed(0)
    ta = torchaudio_layout(widths).eval()
    state = OrderedDict((k, v.clone()) for k, v in ta.state_dict().items())
    assert list(state)[:2] == ["acoustic_model.0.weight", "acoustic_model.0.bias"]
    torch.save(state, tmp_path / "ta.pt")
    ours = load_model(tmp_path / "ta.pt")
    assert ours.config.paddings == TORCHAUDIO_PADDINGS and ours.config.final_relu
    assert ours.config.channels == widths
    for t in (64, 65, 201):
        x = torch.randn(2, 128, t)
        with torch.no_grad():
            expected = ta(x)
            got = torch.log_softmax(ours(x), dim=1)
        assert got.shape == expected.shape  # torchaudio's padding: T' differs from "same"
        assert got.shape[2] == ours.geometry.output_length(t)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # the module layout stays gradnap's
    assert isinstance(ours.layer11.relu, nn.ReLU)
    assert ours.layer9.conv.padding == (16,)


def test_torchaudio_bad_layouts():
    ta = torchaudio_layout((8,) * 8 + (16, 16, 29))
    state = dict(ta.state_dict())
    wrong_classes = torchaudio_layout((8,) * 8 + (16, 16, 40)).state_dict()
    with pytest.raises(GradnapError, match="40 output classes"):
        from_torchaudio_state_dict(wrong_classes, "x.pt")
    del state["acoustic_model.20.weight"], state["acoustic_model.20.bias"]
    with pytest.raises(GradnapError, match="x.pt: torchaudio Wav2Letter layers"):
        from_torchaudio_state_dict(state, "x.pt")


@pytest.mark.parametrize(
    ("name", "architecture"), [("default", "Wav2Letter"), ("transformer", "ConvTransformer")]
)
def test_shipped_checkpoints(name, architecture):
    path = ckpt.SHIPPED_MODELS[name]
    assert path.is_file() and path.stat().st_size < 20e6
    model = load_model(name)
    assert type(model).__name__ == architecture
    assert model.config == MODEL_CONFIGS[name]
    assert model.features == FEATURES
    assert model.metadata["holdout_voices"] and model.metadata["history"]
    assert read_model_file(name)["dtype"] == "float16"
    x = torch.randn(1, 128, 120)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 29, model.geometry.output_length(120))
    assert torch.isfinite(out).all()


def test_unusable_model_files_say_what_is_wrong(tmp_path):
    good = save_model(tmp_path / "good.pt", build_model(TINY, seed=0))
    (tmp_path / "dir.pt").mkdir()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:5000])
    np.savez(tmp_path / "result.npz", meta=np.array("{}"))
    cases = {
        "dir.pt": "is a directory, not a model file (nor a Hugging Face checkpoint directory: "
        "it has no config.json)",
        "empty.pt": "empty file, not a model checkpoint",
        "truncated.pt": "truncated or corrupt checkpoint",
        "result.npz": "a gradnap result file (.npz), not a model checkpoint",
    }
    for name, words in cases.items():
        with pytest.raises(GradnapError) as info:
            load_model(tmp_path / name)
        assert str(info.value) == f"{tmp_path / name}: {words}" + (
            " (an interrupted copy or write?)" if name == "truncated.pt" else ""
        )


def test_has_attention(tmp_path):
    from gradnap.asr.modelfile import has_attention

    assert has_attention(save_model(tmp_path / "t.pt", build_model("transformer")))
    assert not has_attention(save_model(tmp_path / "w.pt", build_model(TINY)))
    assert not has_attention("default") and not has_attention(tmp_path / "missing.pt")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert has_attention(hf)
