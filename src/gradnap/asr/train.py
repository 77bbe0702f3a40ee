"""CTC training of a log-mel model (a Wav2Letter, or a
:class:`~gradnap.asr.transformer.ConvTransformer`) on a LibriSpeech-format corpus.

* Features are computed once and cached (:func:`gradnap.asr.data.load_features`).
* Held out: whole voices (``holdout_voices``) and a fraction of the sentences
  (:func:`gradnap.asr.data.split_corpus`); the validation half is scored (greedy CER) after
  every epoch.
* SpecAugment-style masking of the training batches (:mod:`gradnap.asr.augment`).
* Adam with a linear warm-up and a cosine decay, CTC loss (blank = 28), gradient
  clipping; batches of similar length (:func:`gradnap.asr.data.make_batches`) in an order
  fixed by ``seed`` and the epoch number.
* After every epoch the run state (model, optimizer, step, history) is written
  atomically to ``<run_dir>/last.pt`` and the model to ``out``; Ctrl-C stops after the
  current batch and saves the same state mid-epoch. ``resume=True`` continues from
  ``last.pt``: the batches of an epoch depend only on the seed and the epoch, so a
  resumed run repeats the uninterrupted one step for step.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradnap.asr.augment import augments, spec_augment
from gradnap.asr.config import MODEL_CONFIGS, ConvTransformerConfig
from gradnap.asr.data import Example, collate, load_features, make_batches, split_corpus
from gradnap.asr.evaluate import evaluate_model
from gradnap.asr.model import ModelConfig, Wav2Letter, build_model
from gradnap.asr.modelfile import config_dict, read_model_file, save_model
from gradnap.asr.transformer import ConvTransformer
from gradnap.corpus.librispeech import read_corpus
from gradnap.defaults import BLANK_INDEX, CACHE_DIR, FEATURES, TRAIN, FeatureConfig, TrainConfig
from gradnap.errors import GradnapError
from gradnap.fileio import check_writable, remove_stale_temporaries
from gradnap.progress import progress_bar

__all__ = [
    "GracefulStop",
    "TrainResult",
    "check_resumable",
    "lr_factor",
    "run_dir_for",
    "train",
    "train_examples",
]

log = logging.getLogger(__name__)

RUN_FORMAT = "gradnap-train-run-1"


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    model: Wav2Letter | ConvTransformer
    #: One dict per finished epoch: epoch, train_loss, valid_loss, valid_cer, valid_wer,
    #: seconds (cumulative training wall time), utterances_per_second, lr.
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
    out: Path | None = None


def check_resumable(
    state_path: Path, saved: dict[str, Any], now: dict[str, Any], length: str
) -> None:
    """Raise :class:`GradnapError` when the training settings ``now`` differ from those a
    run state was saved with, except ``length`` (the planned epochs or steps): a resumed run
    may go on longer or stop earlier, which stretches the learning-rate schedule from the
    current step on (logged)."""
    saved = dict(saved)
    if saved.get(length) != now[length]:
        log.warning(
            "resuming with %s %s instead of %s: the learning-rate schedule changes",
            now[length],
            length,
            saved.get(length),
        )
        saved[length] = now[length]
    if saved != now:
        diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        raise GradnapError(
            f"{state_path}: training settings differ from the run being resumed "
            f"(setting: (saved, now)) {diff}"
        )


def lr_factor(step: int, total_steps: int, warmup_steps: int, final_fraction: float) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): linear warm-up to 1
    over ``warmup_steps``, then cosine decay to ``final_fraction`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def run_dir_for(out: Path) -> Path:
    """Default run directory of an output checkpoint: ``<cache>/runs/<out stem>``."""
    return CACHE_DIR / "runs" / Path(out).stem


def _check_outputs(out: Path, state_path: Path) -> None:
    """Before any work: ``out`` and the run state can be written; stale temporary files
    of killed writes of either are removed."""
    check_writable(out, "--out")
    check_writable(state_path, "run state")
    for path in (out, state_path):
        remove_stale_temporaries(path)


class GracefulStop:
    """A context in which ``signals`` set :attr:`stop` (training saves its state after
    the current step and stops); a second SIGINT raises ``KeyboardInterrupt`` at once.
    Outside the main thread signals cannot be caught, and the context does nothing."""

    def __init__(
        self,
        signals: tuple[int, ...] = (signal.SIGINT,),
        message: str = "signal %d: saving the run state after this step",
    ) -> None:
        self.stop = False
        self._signals = signals
        self._message = message
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        for sig in self._signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def _handler(self, signum, frame) -> None:
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True
        log.warning(self._message, signum)

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)


def _epoch_batches(lengths: list[int], cfg: TrainConfig, epoch: int) -> list[list[int]]:
    return make_batches(lengths, cfg.max_frames, cfg.max_batch, seed=cfg.seed * 100003 + epoch)


def train_examples(
    train_set: list[Example],
    valid_set: list[Example],
    config: str | ModelConfig | ConvTransformerConfig,
    out: str | Path,
    cfg: TrainConfig = TRAIN,
    run_dir: str | Path | None = None,
    resume: bool = False,
    features: FeatureConfig = FEATURES,
    metadata: dict | None = None,
    progress: bool = True,
    checkpoint_dtype: torch.dtype = torch.float32,
    stop_after_batches: int | None = None,
) -> TrainResult:
    """Train on ``train_set``, validate on ``valid_set`` after every epoch.

    ``stop_after_batches`` (for tests) stops as if Ctrl-C had been pressed after that
    many batches of this call. Returns the trained model and the per-epoch history.
    """
    if not train_set:
        raise GradnapError("training set is empty (check --holdout-voice / the corpus)")
    out = Path(out)
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(out)
    state_path = run_dir / "last.pt"
    _check_outputs(out, state_path)
    lengths = [e.num_frames for e in train_set]
    steps_per_epoch = [len(_epoch_batches(lengths, cfg, ep)) for ep in range(cfg.epochs)]
    total_steps = sum(steps_per_epoch)

    model = build_model(config, seed=cfg.seed)
    model.features = features
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history: list[dict] = []
    epoch, batch_done, step, seconds = 0, 0, 0, 0.0
    partial_loss: tuple[float, int] = (0.0, 0)  # (loss sum, utterances) of a resumed epoch
    if resume:
        if not state_path.is_file():
            raise GradnapError(f"--resume: no run state {state_path} to resume from")
        blob = read_model_file(state_path)
        if blob.get("run_format") != RUN_FORMAT:
            raise GradnapError(f"{state_path}: not a gradnap training run state")
        check_resumable(state_path, blob["train_config"], asdict(cfg), "epochs")
        if blob["config"] != config_dict(model.config):
            raise GradnapError(
                f"{state_path}: the run used model config {blob['config']['name']!r}"
            )
        model.load_state_dict(blob["state_dict"])
        opt.load_state_dict(blob["optimizer"])
        epoch, batch_done, step = blob["epoch"], blob["batch"], blob["step"]
        seconds = blob["seconds"]
        partial_loss = tuple(blob.get("epoch_loss", (0.0, 0)))
        history = list(blob["metadata"].get("history", []))
        log.info(
            "resuming %s at epoch %d, batch %d (step %d)", state_path, epoch + 1, batch_done, step
        )

    ctc = torch.nn.CTCLoss(blank=BLANK_INDEX, zero_infinity=True)
    geometry = model.geometry
    meta_base = dict(metadata or {})
    meta_base["train_config"] = asdict(cfg)
    meta_base["train_utterances"] = len(train_set)
    meta_base["valid_utterances"] = len(valid_set)
    n_params = sum(p.numel() for p in model.parameters())
    meta_base["parameters"] = n_params
    log.info(
        "training %s (%d parameters) on %d utterances, %d epochs of ~%d batches",
        model.config.name,
        n_params,
        len(train_set),
        cfg.epochs,
        total_steps // max(1, cfg.epochs),
    )

    def save_state(ep: int, batch: int, epoch_loss: tuple[float, int] = (0.0, 0)) -> None:
        meta = dict(meta_base, history=history, epochs_done=ep, seconds=seconds)
        extra = {
            "run_format": RUN_FORMAT,
            "optimizer": opt.state_dict(),
            "epoch": ep,
            "batch": batch,
            "step": step,
            "seconds": seconds,
            "epoch_loss": list(epoch_loss),
            "train_config": asdict(cfg),
        }
        try:
            save_model(state_path, model, meta, features, extra=extra)
        except GradnapError as exc:
            kept = (
                f"the run state of an earlier epoch in {state_path} is kept: make room and run "
                "again with --resume"
                if state_path.is_file()
                else "no run state is kept"
            )
            raise GradnapError(f"{exc}; {kept}") from exc

    interrupted = False
    batches_this_call = 0
    with GracefulStop(
        message="interrupt (signal %d): saving a checkpoint after this batch (Ctrl-C again "
        "to abort)"
    ) as flag:
        while epoch < cfg.epochs and not interrupted:
            model.train()
            batches = _epoch_batches(lengths, cfg, epoch)
            bar = progress_bar(
                len(train_set),
                f"epoch {epoch + 1}/{cfg.epochs}",
                enabled=progress,
                initial=sum(len(b) for b in batches[:batch_done]),
            )
            loss_sum, loss_n = partial_loss
            partial_loss = (0.0, 0)
            t_epoch = time.perf_counter()
            utts_epoch = 0
            for bi in range(batch_done, len(batches)):
                t0 = time.perf_counter()
                batch = collate([train_set[i] for i in batches[bi]], geometry)
                x = batch.features  # (B, F, T)
                if augments(cfg):
                    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                    x = spec_augment(x, batch.input_lengths, cfg, gen)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * lr_factor(
                        step, total_steps, cfg.warmup_steps, cfg.final_lr_fraction
                    )
                logits, _ = model.forward_padded(x, batch.input_lengths)  # (B, K, T')
                log_probs = torch.log_softmax(logits, dim=1).permute(2, 0, 1)  # (T', B, K)
                loss = ctc(log_probs, batch.targets, batch.output_lengths, batch.target_lengths)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                seconds += time.perf_counter() - t0
                loss_sum += float(loss.detach()) * len(batches[bi])
                loss_n += len(batches[bi])
                utts_epoch += len(batches[bi])
                bar.note(f"loss {loss_sum / loss_n:.3f}")
                bar.update(len(batches[bi]), frames=int(batch.input_lengths.sum()))
                batches_this_call += 1
                if stop_after_batches is not None and batches_this_call >= stop_after_batches:
                    flag.stop = True
                if flag.stop:
                    batch_done = bi + 1
                    interrupted = True
                    break
            bar.close()
            if interrupted:
                if batch_done >= len(batches):  # the epoch happened to be complete
                    interrupted = False
                else:
                    save_state(epoch, batch_done, (loss_sum, loss_n))
                    log.warning("interrupted: run state saved to %s (use --resume)", state_path)
                    break
            t_valid = time.perf_counter()
            res = evaluate_model(model, valid_set) if valid_set else None
            entry = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(1, loss_n),
                "valid_loss": res.loss if res else float("nan"),
                "valid_cer": res.greedy.cer if res else float("nan"),
                "valid_wer": res.greedy.wer if res else float("nan"),
                "seconds": seconds,
                "utterances_per_second": utts_epoch / max(1e-9, t_valid - t_epoch),
                "lr": opt.param_groups[0]["lr"],
            }
            history.append(entry)
            log.info(
                "epoch %d: train loss %.3f, valid loss %.3f, valid CER %.2f%%, WER %.2f%% (%.0f s)",
                epoch + 1,
                entry["train_loss"],
                entry["valid_loss"],
                100 * entry["valid_cer"],
                100 * entry["valid_wer"],
                seconds,
            )
            epoch += 1
            batch_done = 0
            save_state(epoch, 0)
            meta = dict(meta_base, history=history, epochs_done=epoch, seconds=seconds)
            try:
                save_model(out, model, meta, features, dtype=checkpoint_dtype)
            except GradnapError as exc:  # the run state of this epoch is saved
                raise GradnapError(
                    f"{exc}; the run state after epoch {epoch} is in {state_path}: make room "
                    f"and run again with --resume (--run-dir {run_dir} if --out changes)"
                ) from exc
            if flag.stop:
                interrupted = True
    model.metadata = dict(meta_base, history=history, epochs_done=epoch, seconds=seconds)
    model.eval()
    return TrainResult(model, history, interrupted, out)


def train(
    corpus_dir: str | Path,
    config: str | ModelConfig | ConvTransformerConfig,
    out: str | Path,
    cfg: TrainConfig = TRAIN,
    holdout_voices: tuple[str, ...] = (),
    run_dir: str | Path | None = None,
    resume: bool = False,
    threads: int | None = None,
    features: FeatureConfig = FEATURES,
    feature_cache: str | Path | None = None,
    progress: bool = True,
    checkpoint_dtype: torch.dtype = torch.float32,
) -> TrainResult:
    """Train ``config`` on the corpus at ``corpus_dir`` and write the checkpoint ``out``.

    ``threads`` sets ``torch.set_num_threads`` (default: all cores, at most 4).
    """
    if isinstance(config, str) and config not in MODEL_CONFIGS:
        raise GradnapError(
            f"--config: unknown model config {config!r}; choose from {', '.join(MODEL_CONFIGS)}"
        )
    out = Path(out)
    _check_outputs(out, Path(run_dir or run_dir_for(out)) / "last.pt")  # before the features
    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))
    corpus = read_corpus(corpus_dir)
    cache_dir = Path(feature_cache) if feature_cache is not None else None
    examples = load_features(corpus, features, cache_dir=cache_dir, progress=progress)
    if corpus.problems:
        log.warning("%s: %d utterances skipped", corpus_dir, len(corpus.problems))
    split = split_corpus(examples, holdout_voices, cfg.heldout_fraction, corpus.speakers())
    log.info("split: %s", split.summary())
    metadata = {
        "corpus": str(Path(corpus_dir)),
        "corpus_utterances": len(examples),
        "corpus_skipped": len(corpus.problems),
        "holdout_voices": list(holdout_voices),
        "heldout_fraction": cfg.heldout_fraction,
        "speakers": corpus.speakers(),
        "threads": torch.get_num_threads(),
    }
    return train_examples(
        split.train,
        split.valid,
        config,
        out,
        cfg=cfg,
        run_dir=run_dir,
        resume=resume,
        features=features,
        metadata=metadata,
        progress=progress,
        checkpoint_dtype=checkpoint_dtype,
    )
