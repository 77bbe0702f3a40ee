"""``gradnap train``: CTC training of a log-mel model (Wav2Letter or the conv + attention
model) on a LibriSpeech-format corpus."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from gradnap.cli.common import FEATURE_CACHE_HELP, NO_PROGRESS_HELP, THREADS_HELP
from gradnap.defaults import TRAIN


def register(subparsers) -> None:
    from gradnap.asr.config import MODEL_CONFIGS

    p = subparsers.add_parser(
        "train",
        help="train a Wav2Letter or conv + attention model with CTC",
        description=(
            "Train a log-mel model (CTC, Adam) on a LibriSpeech-format corpus: a Wav2Letter "
            "(--config default, paper) or a conv front end with self-attention blocks "
            "(--config transformer). Holds out "
            "the --holdout-voice speakers and a fraction of the sentences; prints the "
            "validation CER after every epoch; checkpoints every epoch and on Ctrl-C."
        ),
    )
    p.add_argument("--corpus", type=Path, required=True, help="LibriSpeech-format corpus directory")
    p.add_argument(
        "--config",
        default="default",
        choices=sorted(MODEL_CONFIGS),
        help="model config: a Wav2Letter (default, paper) or the conv + attention model "
        "(transformer)",
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (every epoch)")
    p.add_argument("--epochs", type=int, default=TRAIN.epochs, help="epochs")
    p.add_argument("--lr", type=float, default=TRAIN.lr, help="peak Adam learning rate")
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=TRAIN.warmup_steps,
        help="linear warm-up steps",
    )
    p.add_argument(
        "--max-frames",
        type=int,
        default=TRAIN.max_frames,
        help="padded input frames per batch",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=TRAIN.max_batch,
        help="utterances per batch at most",
    )
    p.add_argument(
        "--grad-clip",
        type=float,
        default=TRAIN.grad_clip,
        help="gradient-norm clip, 0 = off",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=TRAIN.seed,
        help="seed of weights and batch order",
    )
    p.add_argument(
        "--holdout-voice",
        nargs="*",
        default=[],
        metavar="V",
        help="speakers (voices) left out of training entirely (default: none)",
    )
    p.add_argument(
        "--heldout-fraction",
        type=float,
        default=TRAIN.heldout_fraction,
        help="fraction of sentences held out, half validation, half test",
    )
    for flag, field, what in (
        ("--freq-masks", "freq_masks", "SpecAugment frequency masks per utterance, 0 = off"),
        ("--freq-mask-width", "freq_mask_width", "widest frequency mask in mel bins"),
        ("--time-masks", "time_masks", "SpecAugment time masks per utterance, 0 = off"),
        ("--time-mask-width", "time_mask_width", "widest time mask in frames"),
    ):
        p.add_argument(flag, type=int, default=getattr(TRAIN, field), help=what)
    p.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="run state directory (default: <cache>/runs/<OUT stem>)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/last.pt")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument(
        "--feature-cache", type=Path, default=None, metavar="DIR", help=FEATURE_CACHE_HELP
    )
    p.add_argument(
        "--float16", action="store_true", help="store the output weights in float16 (half the size)"
    )
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from gradnap.asr.train import train

    cfg = replace(
        TRAIN,
        epochs=args.epochs,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        max_frames=args.max_frames,
        max_batch=args.max_batch,
        grad_clip=args.grad_clip,
        heldout_fraction=args.heldout_fraction,
        seed=args.seed,
        freq_masks=args.freq_masks,
        freq_mask_width=args.freq_mask_width,
        time_masks=args.time_masks,
        time_mask_width=args.time_mask_width,
    )
    result = train(
        args.corpus,
        args.config,
        args.out,
        cfg,
        holdout_voices=tuple(args.holdout_voice),
        run_dir=args.run_dir,
        resume=args.resume,
        threads=args.threads,
        feature_cache=args.feature_cache,
        progress=not args.no_progress,
        checkpoint_dtype=torch.float16 if args.float16 else torch.float32,
    )
    print("epoch  train_loss  valid_loss  valid_CER  valid_WER  seconds")
    for h in result.history:
        print(
            f"{h['epoch']:5d}  {h['train_loss']:10.3f}  {h['valid_loss']:10.2f}  "
            f"{100 * h['valid_cer']:8.2f}%  {100 * h['valid_wer']:8.2f}%  {h['seconds']:7.0f}"
        )
    if result.interrupted:
        print(f"interrupted; resume with --resume (model so far: {args.out})")
        return 130
    print(f"model written to {args.out}")
    return 0
