"""Training the small wav2vec 2.0 CTC model (gradnap.asr.train_hf) on a tiny corpus."""

import dataclasses
import json
import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never the network
pytest.importorskip("transformers", reason="transformers is not installed (the 'hf' extra)")

from gradnap.asr.hf import HFCTCModel  # noqa: E402
from gradnap.asr.modelfile import load_model  # noqa: E402
from gradnap.asr.train_hf import (  # noqa: E402
    VOCAB,
    WAVEFORM,
    build_transformer,
    save_transformer,
    train_transformer,
)
from gradnap.defaults import TransformerConfig, TransformerTrainConfig  # noqa: E402
from gradnap.errors import GradnapError  # noqa: E402
from helpers import write_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TransformerConfig(
    conv_dim=(8, 8),
    conv_kernel=(10, 8),
    conv_stride=(5, 4),
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    num_conv_pos_embeddings=4,
    num_conv_pos_embedding_groups=2,
    mask_time_prob=0.2,
    mask_time_length=2,
)
CFG = TransformerTrainConfig(
    max_steps=3, warmup_steps=1, max_samples=16000, max_batch=2, heldout_fraction=0.5,
    valid_every=2, lr=1e-3,
)  # fmt: skip
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    texts = [f"{WORDS[i]} {WORDS[(3 * i + 1) % len(WORDS)]}".upper() for i in range(10)]
    return write_corpus(
        tmp_path_factory.mktemp("c") / "corpus", 10, 0.3, broken=False, texts=texts, phones=False
    )


def test_saved_model_loads_with_gradnaps_alphabet(tmp_path):
    hf = build_transformer(TINY, seed=1).eval()
    out = save_transformer(tmp_path / "m", hf, {"note": 1})
    assert (out / "model.safetensors").is_file() and json.loads(
        (out / "gradnap_training.json").read_text()
    ) == {"note": 1}
    model = load_model(out)
    assert isinstance(model, HFCTCModel)
    assert model.features == WAVEFORM
    assert model.class_order.tolist() == list(range(len(VOCAB)))
    assert model.metadata["unknown_tokens"] == [] and model.metadata["missing_classes"] == []
    x = torch.randn(1, 1, 4000)
    with torch.no_grad():
        expected = hf.half().float()(input_values=x[:, 0]).logits.transpose(1, 2)
    torch.testing.assert_close(model(x), expected)
    # a second save replaces the directory, leaving no temporaries behind
    save_transformer(tmp_path / "m", hf)
    assert not (out / "gradnap_training.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_resumed_run_equals_uninterrupted(corpus, tmp_path):
    full = train_transformer(corpus, tmp_path / "a" / "m", tmp_path / "a", TINY, CFG, threads=1)
    assert not full.interrupted and full.step == 3
    assert [h["step"] for h in full.history] == [2, 3]
    assert all(0 <= h["valid_cer"] for h in full.history)
    first = train_transformer_stopped(corpus, tmp_path / "b")
    assert first.interrupted and first.step == 1
    rest = train_transformer(
        corpus, tmp_path / "b" / "m", tmp_path / "b", TINY, CFG, resume=True, threads=1
    )
    assert rest.step == 3 and not rest.interrupted
    for (k, a), b in zip(
        full.model.state_dict().items(), rest.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k)
    assert [h["train_loss"] for h in rest.history] == pytest.approx(
        [h["train_loss"] for h in full.history]
    )
    meta = json.loads((tmp_path / "b" / "m" / "gradnap_training.json").read_text())
    assert meta["steps"] == 3 and len(meta["history"]) == 2
    assert isinstance(load_model(tmp_path / "b" / "m"), HFCTCModel)


def train_transformer_stopped(corpus, run):
    return train_transformer(corpus, run / "m", run, TINY, CFG, threads=1, stop_after_steps=1)


def test_resume_refuses_other_settings(corpus, tmp_path):
    train_transformer_stopped(corpus, tmp_path)
    other = dataclasses.replace(CFG, lr=5e-4)
    with pytest.raises(GradnapError, match="settings differ"):
        train_transformer(corpus, tmp_path / "m", tmp_path, TINY, other, resume=True, threads=1)
    with pytest.raises(GradnapError, match="no run state"):
        train_transformer(corpus, tmp_path / "x", tmp_path / "x", TINY, CFG, resume=True)
