"""CTC training of a small wav2vec 2.0 model (``transformers``' ``Wav2Vec2ForCTC``) on a
LibriSpeech-format corpus (``scripts/train_transformer.py``).

* The model is built from :class:`~gradnap.defaults.TransformerConfig` (a conv front end
  on the waveform, a pre-LN transformer encoder, a linear CTC head) and written as a
  ``save_pretrained`` directory with its tokenizer and feature-extractor files
  (:func:`save_transformer`), which :func:`gradnap.load_model` reads like any other
  Hugging Face checkpoint (:mod:`gradnap.asr.hf`). Its vocabulary is gradnap's alphabet
  in gradnap's order (``a``-``z``, ``|`` = space, ``'``, ``<pad>`` = CTC blank = 28).
* Inputs: the waveform normalised per utterance (:func:`gradnap.features.waveform_input`),
  cached once per corpus as float16 (:func:`gradnap.asr.data.load_features`).
* Splits as for the Wav2Letter models (:func:`gradnap.asr.data.split_corpus`): held-out
  voices and 5 % of the sentences (validation / test halves).
* Batches of similar length (:func:`gradnap.asr.data.make_batches`, at most
  ``max_samples`` padded samples) in an order fixed by the seed and the epoch; padding is
  masked (``attention_mask``); ``transformers``' time masking as augmentation, seeded by
  the step. AdamW, linear warm-up and cosine decay over ``max_steps``
  (:func:`gradnap.asr.train.lr_factor`), gradient clipping, CTC loss (mean over target
  length).
* The run state (weights, optimizer, step, history) is written atomically to
  ``<run_dir>/state.pt`` every ``checkpoint_minutes``, after every validation, and on
  SIGINT / SIGTERM or when the time budget is spent; ``resume=True`` continues from it,
  step for step as an uninterrupted run (every random draw is seeded by the step).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradnap.alphabet import class_label
from gradnap.asr.data import Example, collate, load_features, make_batches, split_corpus
from gradnap.asr.evaluate import evaluate_model
from gradnap.asr.hf import HFCTCModel, vocabulary_from_tokens
from gradnap.asr.modelfile import config_dict
from gradnap.asr.train import GracefulStop, check_resumable, lr_factor
from gradnap.corpus.librispeech import read_corpus
from gradnap.defaults import (
    ALPHABET,
    BLANK_INDEX,
    TRANSFORMER,
    TRANSFORMER_TRAIN,
    FeatureConfig,
    TransformerConfig,
    TransformerTrainConfig,
)
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_bytes, check_writable, write_error

__all__ = [
    "WAVEFORM",
    "VOCAB",
    "TrainHFResult",
    "build_transformer",
    "save_transformer",
    "train_transformer",
    "train_transformer_examples",
]

log = logging.getLogger(__name__)

RUN_FORMAT = "gradnap-hf-train-run-1"
#: The model input: the waveform at 16 kHz, normalised per utterance (as
#: :func:`gradnap.asr.hf.read_feature_config` reads the written preprocessor config).
WAVEFORM = FeatureConfig(input="waveform")
#: Token -> output index: gradnap's classes in gradnap's order.
VOCAB: dict[str, int] = {("|" if ch == " " else ch): k for k, ch in enumerate(ALPHABET)} | {
    "<pad>": BLANK_INDEX
}


def build_transformer(arch: TransformerConfig = TRANSFORMER, seed: int = 0) -> Any:
    """A randomly initialised ``Wav2Vec2ForCTC`` of ``arch`` (needs ``transformers``)."""
    try:
        import transformers
    except ImportError:
        raise GradnapError(
            "training a transformer needs the transformers package (pip install 'gradnap[hf]')"
        ) from None
    config = transformers.Wav2Vec2Config(
        vocab_size=len(VOCAB),
        pad_token_id=BLANK_INDEX,
        bos_token_id=None,
        eos_token_id=None,
        conv_dim=list(arch.conv_dim),
        conv_kernel=list(arch.conv_kernel),
        conv_stride=list(arch.conv_stride),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        intermediate_size=arch.intermediate_size,
        num_conv_pos_embeddings=arch.num_conv_pos_embeddings,
        num_conv_pos_embedding_groups=arch.num_conv_pos_embedding_groups,
        hidden_dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        apply_spec_augment=arch.mask_time_prob > 0,
        mask_time_prob=arch.mask_time_prob,
        mask_time_length=arch.mask_time_length,
        mask_feature_prob=0.0,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
    )
    torch.manual_seed(seed)
    model = transformers.Wav2Vec2ForCTC(config)
    # the loader's front-end check reads the config's kernels and strides (ints)
    model.config.architectures = ["Wav2Vec2ForCTC"]
    return model


def _side_files() -> dict[str, str]:
    """Tokenizer and feature-extractor files of a model written by this module."""
    tok = {
        "tokenizer_class": "Wav2Vec2CTCTokenizer",
        "pad_token": "<pad>",
        "unk_token": "<pad>",
        "bos_token": None,
        "eos_token": None,
        "word_delimiter_token": "|",
        "do_lower_case": False,
    }
    pre = {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "sampling_rate": WAVEFORM.sample_rate,
        "padding_value": 0.0,
        "do_normalize": WAVEFORM.normalize == "utterance",
        "return_attention_mask": True,
    }
    return {
        "vocab.json": json.dumps(VOCAB, indent=1),
        "tokenizer_config.json": json.dumps(tok, indent=1),
        "special_tokens_map.json": json.dumps({"pad_token": "<pad>", "unk_token": "<pad>"}),
        "preprocessor_config.json": json.dumps(pre, indent=1),
    }


def save_transformer(
    directory: str | Path,
    model: Any,
    metadata: dict | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write ``model`` (a ``Wav2Vec2ForCTC``) as a ``save_pretrained`` directory with its
    tokenizer and feature-extractor files, weights in ``dtype`` (``model.safetensors``),
    and ``metadata`` (training history ...) in ``gradnap_training.json``.

    The directory is written next to ``directory`` and renamed into place, so a killed
    write leaves the previous version (or nothing). Returns the directory.
    """
    directory = Path(directory)
    parent = directory.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise write_error(directory, exc) from exc
    try:
        copy.deepcopy(model).to(dtype).save_pretrained(str(tmp), safe_serialization=True)
        for name, text in _side_files().items():
            (tmp / name).write_text(text + "\n", encoding="utf-8")
        if metadata is not None:
            (tmp / "gradnap_training.json").write_text(
                json.dumps(metadata, indent=1) + "\n", encoding="utf-8"
            )
        old = None
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=parent))
            os.replace(directory, old / "d")
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(directory, exc) from exc
        raise
    return directory


@dataclass
class TrainHFResult:
    """Outcome of :func:`train_transformer_examples`."""

    model: Any
    #: One dict per validation: step, epoch (fractional), train_loss (mean since the last
    #: validation), valid_loss (nats/utterance), valid_cer, valid_wer, seconds
    #: (cumulative training time), lr.
    history: list[dict] = field(default_factory=list)
    #: Stopped before ``max_steps`` (signal, time budget or ``stop_after_steps``).
    interrupted: bool = False
    step: int = 0


def _collate(examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Waveforms ``(B, N)``, attention mask ``(B, N)`` and the padded batch."""
    from gradnap.geometry import Geometry

    batch = collate(examples, Geometry(()))
    x = batch.features[:, 0, :]  # (B, N)
    mask = (torch.arange(x.shape[1])[None, :] < batch.input_lengths[:, None]).long()
    return x, mask, batch


def _locate(step: int, epoch_sizes: list[int]) -> tuple[int, int]:
    """Epoch and batch index of optimizer step ``step`` (``epoch_sizes`` grows as needed
    by the caller)."""
    for ep, n in enumerate(epoch_sizes):
        if step < n:
            return ep, step
        step -= n
    raise IndexError(step)


def train_transformer_examples(
    train_set: list[Example],
    valid_set: list[Example],
    out: str | Path,
    run_dir: str | Path,
    arch: TransformerConfig = TRANSFORMER,
    cfg: TransformerTrainConfig = TRANSFORMER_TRAIN,
    resume: bool = False,
    metadata: dict | None = None,
    minutes: float | None = None,
    stop_after_steps: int | None = None,
) -> TrainHFResult:
    """Train a :func:`build_transformer` model on ``train_set`` (waveform examples,
    :data:`WAVEFORM`) for ``cfg.max_steps`` steps; validate on ``valid_set`` every
    ``cfg.valid_every`` steps and at the end, writing the model to ``out``
    (:func:`save_transformer`, float16) after each validation.

    ``minutes``: a budget of training time for this call; when it is spent, the run state
    is saved and the call returns (``interrupted``); ``resume=True`` continues.
    ``stop_after_steps`` (for tests) stops the same way after that many steps of this call.
    """
    if not train_set:
        raise GradnapError("training set is empty (check --holdout-voice / the corpus)")
    out, run_dir = Path(out), Path(run_dir)
    state_path = run_dir / "state.pt"
    check_writable(state_path, "run state")
    check_writable(out, "--out", directory=True)
    hf = build_transformer(arch, cfg.seed)
    decay = [p for p in hf.parameters() if p.dim() > 1]
    no_decay = [p for p in hf.parameters() if p.dim() <= 1]
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay},
    ]
    opt = torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        weight_decay=0.0,
    )
    history: list[dict] = []
    step, seconds, window = 0, 0.0, (0.0, 0)
    if resume:
        if not state_path.is_file():
            raise GradnapError(f"--resume: no run state {state_path} to resume from")
        try:
            blob = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise GradnapError(f"{state_path}: unreadable run state ({exc})") from None
        if not isinstance(blob, dict) or blob.get("format") != RUN_FORMAT:
            raise GradnapError(f"{state_path}: not a transformer training run state")
        if blob["arch"] != config_dict(arch):
            raise GradnapError(f"{state_path}: the run used another architecture {blob['arch']}")
        check_resumable(state_path, blob["train_config"], asdict(cfg), "max_steps")
        hf.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        step, seconds = int(blob["step"]), float(blob["seconds"])
        window = (float(blob["window"][0]), int(blob["window"][1]))
        history = list(blob["history"])
        log.info("resuming %s at step %d (%.1f min of training)", state_path, step, seconds / 60)

    wrapper = HFCTCModel(hf, vocabulary_from_tokens(VOCAB, len(VOCAB)), WAVEFORM)
    n_params = sum(p.numel() for p in hf.parameters())
    lengths = [e.num_frames for e in train_set]
    epoch_sizes: list[int] = []

    def batches_of(ep: int) -> list[list[int]]:
        return make_batches(lengths, cfg.max_samples, cfg.max_batch, seed=cfg.seed * 100003 + ep)

    def locate(s: int) -> tuple[int, int]:
        while sum(epoch_sizes) <= s:
            epoch_sizes.append(len(batches_of(len(epoch_sizes))))
        return _locate(s, epoch_sizes)

    meta_base = dict(metadata or {})
    meta_base.update(
        architecture=config_dict(arch),
        train_config=asdict(cfg),
        parameters=n_params,
        train_utterances=len(train_set),
        valid_utterances=len(valid_set),
        train_hours=sum(lengths) / WAVEFORM.sample_rate / 3600,
    )
    log.info(
        "training a wav2vec 2.0 CTC model (%d parameters) on %d utterances (%.1f h) for %d "
        "steps (~%d per epoch)",
        n_params,
        len(train_set),
        meta_base["train_hours"],
        cfg.max_steps,
        len(batches_of(0)),
    )

    def save_state() -> None:
        buf = io.BytesIO()
        torch.save(
            {
                "format": RUN_FORMAT,
                "arch": config_dict(arch),
                "train_config": asdict(cfg),
                "model": hf.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "seconds": seconds,
                "window": list(window),
                "history": history,
            },
            buf,
        )
        atomic_write_bytes(state_path, buf.getvalue())

    def validate() -> None:
        nonlocal window
        ep, bi = locate(max(0, step - 1))
        res = (
            evaluate_model(wrapper, valid_set, max_frames=4 * cfg.max_samples)
            if valid_set
            else None
        )
        entry = {
            "step": step,
            "epoch": round(ep + (bi + 1) / epoch_sizes[ep], 3),
            "train_loss": window[0] / max(1, window[1]),
            "valid_loss": res.loss if res else float("nan"),
            "valid_cer": res.greedy.cer if res else float("nan"),
            "valid_wer": res.greedy.wer if res else float("nan"),
            "seconds": seconds,
            "lr": opt.param_groups[0]["lr"],
        }
        history.append(entry)
        window = (0.0, 0)
        log.info(
            "step %d (epoch %.2f): train loss %.3f, valid loss %.1f, valid CER %.2f%%, "
            "WER %.2f%% (%.1f min)",
            step,
            entry["epoch"],
            entry["train_loss"],
            entry["valid_loss"],
            100 * entry["valid_cer"],
            100 * entry["valid_wer"],
            seconds / 60,
        )
        meta = dict(meta_base, history=history, steps=step, seconds=seconds)
        save_transformer(out, hf, meta)

    ctc = torch.nn.CTCLoss(blank=BLANK_INDEX, zero_infinity=True)
    t_call = time.perf_counter()
    last_save = time.perf_counter()
    steps_this_call = 0
    interrupted = False
    log_every = max(1, min(50, cfg.valid_every // 5))
    with GracefulStop((signal.SIGINT, signal.SIGTERM)) as stop:
        while step < cfg.max_steps:
            hf.train()
            ep, bi = locate(step)
            x, mask, batch = _collate([train_set[i] for i in batches_of(ep)[bi]])
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + step)
            np.random.seed((cfg.seed * 1_000_003 + step) % 2**32)  # transformers' masking
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(
                    step, cfg.max_steps, cfg.warmup_steps, cfg.final_lr_fraction
                )
            logits = hf(input_values=x, attention_mask=mask).logits  # (B, T', V)
            out_lens = hf._get_feat_extract_output_lengths(batch.input_lengths).long()
            log_probs = torch.log_softmax(logits, dim=-1).transpose(0, 1)  # (T', B, V)
            loss = ctc(log_probs, batch.targets, out_lens, batch.target_lengths)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(hf.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            steps_this_call += 1
            seconds += time.perf_counter() - t0
            window = (window[0] + float(loss.detach()), window[1] + 1)
            if step % log_every == 0:
                log.info(
                    "step %d/%d epoch %d: loss %.3f (mean since last validation %.3f), "
                    "lr %.2e, %.1f min",
                    step,
                    cfg.max_steps,
                    ep + 1,
                    float(loss.detach()),
                    window[0] / window[1],
                    opt.param_groups[0]["lr"],
                    seconds / 60,
                )
            if step % cfg.valid_every == 0 or step == cfg.max_steps:
                validate()
                save_state()
                last_save = time.perf_counter()
            elif time.perf_counter() - last_save > 60 * cfg.checkpoint_minutes:
                save_state()
                last_save = time.perf_counter()
            over_budget = minutes is not None and time.perf_counter() - t_call > 60 * minutes
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                stop.stop = True
            if (stop.stop or over_budget) and step < cfg.max_steps:
                save_state()
                log.warning(
                    "stopped at step %d: run state saved to %s (resume to continue)",
                    step,
                    state_path,
                )
                interrupted = True
                break
    hf.eval()
    return TrainHFResult(hf, history, interrupted, step)


def _evenly(items: list, n: int | None) -> list:
    """``n`` evenly spaced items of ``items`` (all when ``n`` is ``None`` or larger)."""
    if n is None or n >= len(items):
        return items
    return [items[int(i * len(items) / n)] for i in range(n)]


def train_transformer(
    corpus_dir: str | Path,
    out: str | Path,
    run_dir: str | Path,
    arch: TransformerConfig = TRANSFORMER,
    cfg: TransformerTrainConfig = TRANSFORMER_TRAIN,
    holdout_voices: tuple[str, ...] = (),
    resume: bool = False,
    threads: int | None = None,
    minutes: float | None = None,
    max_utterances: int | None = None,
    valid_utterances: int | None = None,
    feature_cache: str | Path | None = None,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> TrainHFResult:
    """Train the transformer on the corpus at ``corpus_dir`` (splits as
    :func:`gradnap.asr.data.split_corpus`); see :func:`train_transformer_examples`.

    ``max_utterances``: train on an evenly spaced subset of the training split (pilots);
    ``valid_utterances``: validate on an evenly spaced subset of the validation split
    (each validation costs a forward pass over it).
    """
    check_writable(Path(run_dir) / "state.pt", "run state")
    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))
    corpus = read_corpus(corpus_dir)
    cache = Path(feature_cache) if feature_cache is not None else None
    examples = load_features(corpus, WAVEFORM, cache_dir=cache, progress=progress)
    if corpus.problems:
        log.warning("%s: %d utterances skipped", corpus_dir, len(corpus.problems))
    split = split_corpus(examples, holdout_voices, cfg.heldout_fraction, corpus.speakers())
    log.info("split: %s", split.summary())
    train_set = _evenly(split.train, max_utterances)
    valid_set = _evenly(split.valid, valid_utterances)
    metadata = {
        "corpus": str(Path(corpus_dir)),
        "corpus_utterances": len(examples),
        "holdout_voices": list(holdout_voices),
        "heldout_fraction": cfg.heldout_fraction,
        "speakers": corpus.speakers(),
        "threads": torch.get_num_threads(),
        "alphabet": [class_label(k) for k in range(len(VOCAB))],
    }
    return train_transformer_examples(
        train_set,
        valid_set,
        out,
        run_dir,
        arch=arch,
        cfg=cfg,
        resume=resume,
        metadata=metadata,
        minutes=minutes,
        stop_after_steps=stop_after_steps,
    )
