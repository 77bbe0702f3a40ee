import math
from dataclasses import replace

import pytest
import torch

from gradnap.asr.data import Example
from gradnap.asr.modelfile import load_model, read_model_file
from gradnap.asr.train import lr_factor, train, train_examples
from gradnap.corpus.librispeech import Utterance
from gradnap.defaults import TRAIN
from gradnap.errors import GradnapError
from helpers import TINY, disk_full

CFG = replace(TRAIN, epochs=2, lr=3e-3, warmup_steps=2, max_frames=400, max_batch=4, seed=5)


def toy_examples(n: int, seed: int = 0) -> list[Example]:
    """Utterances spelling random strings over 'abc': each letter is 10 frames of its
    own spectral pattern, separated by 4 frames of 'silence'."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(4, 128, 1, generator=g)  # a, b, c, silence
    out = []
    for i in range(n):
        letters = torch.randint(0, 3, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g)
        parts = [patterns[3].expand(128, 4)]
        for k in letters.tolist():
            parts += [patterns[k].expand(128, 10), patterns[3].expand(128, 4)]
        x = torch.cat(parts, dim=1) + 0.1 * torch.randn(128, 4 + 14 * len(letters), generator=g)
        text = "".join("abc"[k] for k in letters.tolist())
        out.append(Example(Utterance(f"u{i}", None, text, "s", "1"), x, letters.clone()))
    return out


def test_lr_schedule():
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    mid = lr_factor(55, 100, 10, 0.1)
    assert mid == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.usefixtures("one_thread")
def test_loss_falls_and_checkpoint_written(tmp_path):
    train_set, valid_set = toy_examples(40), toy_examples(6, seed=1)
    cfg = replace(CFG, epochs=4)
    res = train_examples(
        train_set, valid_set, TINY, tmp_path / "m.pt", cfg, run_dir=tmp_path / "run", progress=False
    )
    losses = [h["train_loss"] for h in res.history]
    assert len(losses) == 4 and not res.interrupted
    assert losses[-1] < 0.6 * losses[0]
    assert res.history[-1]["valid_loss"] < res.history[0]["valid_loss"]
    model = load_model(tmp_path / "m.pt")
    assert model.metadata["history"] == res.history
    assert model.metadata["epochs_done"] == 4
    for a, b in zip(model.parameters(), res.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.usefixtures("one_thread")
def test_interrupt_and_resume_repeat_the_uninterrupted_run(tmp_path):
    train_set, valid_set = toy_examples(24), toy_examples(4, seed=1)
    full = train_examples(
        train_set, valid_set, TINY, tmp_path / "a.pt", CFG, run_dir=tmp_path / "ra", progress=False
    )
    part = train_examples(
        train_set, valid_set, TINY, tmp_path / "b.pt", CFG, run_dir=tmp_path / "rb",
        progress=False, stop_after_batches=3,
    )  # fmt: skip
    assert part.interrupted and part.history == []
    state = read_model_file(tmp_path / "rb" / "last.pt")
    assert (state["epoch"], state["batch"]) == (0, 3)
    resumed = train_examples(
        train_set, valid_set, TINY, tmp_path / "b.pt", CFG, run_dir=tmp_path / "rb",
        progress=False, resume=True,
    )  # fmt: skip
    assert not resumed.interrupted
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    strip = [
        {k: v for k, v in h.items() if k not in ("seconds", "utterances_per_second")}
        for h in full.history
    ]
    assert strip == [
        {k: v for k, v in h.items() if k not in ("seconds", "utterances_per_second")}
        for h in resumed.history
    ]


def test_resume_errors(tmp_path):
    train_set = toy_examples(8)
    with pytest.raises(GradnapError, match="no run state"):
        train_examples(
            train_set, [], TINY, tmp_path / "m.pt", CFG, run_dir=tmp_path / "r", resume=True
        )
    train_examples(
        train_set, [], TINY, tmp_path / "m.pt", CFG, run_dir=tmp_path / "r",
        progress=False, stop_after_batches=1,
    )  # fmt: skip
    with pytest.raises(GradnapError, match="lr"):
        train_examples(
            train_set, [], TINY, tmp_path / "m.pt", replace(CFG, lr=1.0), run_dir=tmp_path / "r",
            resume=True,
        )  # fmt: skip
    with pytest.raises(GradnapError, match="empty"):
        train_examples([], [], TINY, tmp_path / "m.pt", CFG, run_dir=tmp_path / "r")


def test_unwritable_out_fails_before_the_features(tmp_path):
    (tmp_path / "m.pt").mkdir()
    # the corpus does not exist either: the output is checked first
    with pytest.raises(GradnapError, match=r"^--out .*m.pt: is a directory, not a file name$"):
        train(tmp_path / "no corpus", TINY, tmp_path / "m.pt", CFG, run_dir=tmp_path / "r")


@pytest.mark.usefixtures("one_thread")
def test_full_disk_when_writing_the_model_keeps_the_run_state(tmp_path, monkeypatch):
    train_set = toy_examples(8)
    run = dict(run_dir=tmp_path / "r", progress=False)
    disk_full(monkeypatch, "m.pt")
    with pytest.raises(GradnapError) as info:
        train_examples(train_set, [], TINY, tmp_path / "m.pt", CFG, **run)
    state = tmp_path / "r" / "last.pt"
    assert str(info.value) == (
        f"{tmp_path / 'm.pt'}: cannot write (no space left on device); the run state after "
        f"epoch 1 is in {state}: make room and run again with --resume "
        f"(--run-dir {tmp_path / 'r'} if --out changes)"
    )
    monkeypatch.undo()
    resumed = train_examples(train_set, [], TINY, tmp_path / "m.pt", CFG, resume=True, **run)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert load_model(tmp_path / "m.pt").metadata["epochs_done"] == 2


def test_graceful_stop_sets_the_flag_then_aborts_and_restores_the_handlers():
    import os
    import signal

    from gradnap.asr.train import GracefulStop

    before = signal.getsignal(signal.SIGTERM)
    # SIGINT's handler depends on how the tests were started (ignored in a background job)
    before_int = signal.getsignal(signal.SIGINT)
    with GracefulStop((signal.SIGINT, signal.SIGTERM)) as stop:
        assert not stop.stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.stop  # the run saves its state after this step
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C aborts at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getsignal(signal.SIGINT) is before_int
