"""``gradnap collect``: GradNAP accumulators of a model over a corpus, into one result file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradnap.cli.common import HF_MODEL_HELP, MODEL_HELP, NO_PROGRESS_HELP
from gradnap.defaults import AUTOGRAD_STRATEGIES, COLLECT, LABEL_TIMES, METHOD
from gradnap.errors import GradnapError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collect",
        help="collect GradNAP accumulators of a model over a corpus",
        description=(
            "Run the model over a LibriSpeech-format corpus, compute per-frame sensitivities "
            "and accumulate aligned activations and gradients per group and layer into one "
            "result file (.npz, readable with numpy alone; see docs/results.md). Progress: "
            "utterances done of the total, utterances/s, frames/s and the time left. Shards "
            "(--shard) are combined with 'gradnap merge'; under torchrun the ranks split the "
            "corpus and all-reduce their accumulators."
        ),
    )
    p.add_argument("--model", default="default", help=MODEL_HELP + HF_MODEL_HELP)
    p.add_argument("--corpus", required=True, type=Path, help="LibriSpeech-format corpus directory")
    p.add_argument("--out", required=True, type=Path, help="result file to write (.npz)")
    p.add_argument(
        "--groupings",
        "--groups",
        dest="groupings",
        default=COLLECT.groupings,
        help="comma-separated groupings: grapheme, phoneme, speaker (--groups is the old name)",
    )
    p.add_argument(
        "--layers",
        default=None,
        help="comma-separated layer names, 'input' is the spectrogram (default: every layer)",
    )
    p.add_argument(
        "--target",
        default=METHOD.target,
        choices=("prob", "logprob", "logit"),
        help="differentiated quantity",
    )
    p.add_argument(
        "--examples",
        default=METHOD.examples,
        choices=("nonblank", "all", "first"),
        help="which output frames are examples",
    )
    p.add_argument(
        "--min-count",
        type=int,
        default=METHOD.min_count,
        help="groups with fewer examples are left out of profiles",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="process utterances I, I+N, I+2N, ... (default: the whole corpus)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint of an interrupted run"
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint file (default: OUT.partial; removed when the run completes)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=COLLECT.checkpoint_every,
        metavar="N",
        help="checkpoint every N utterances ...",
    )
    p.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=COLLECT.checkpoint_seconds,
        metavar="S",
        help="... or every S seconds, whichever comes first",
    )
    p.add_argument(
        "--engine",
        default="auto",
        choices=("auto", "cone", "autograd", "reference"),
        help="sensitivity engine (default: auto = cone when the model is a Conv1d chain)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads of the cone engine, 0 = torch's own threading (default: torch's "
        "intra-op threads)",
    )
    p.add_argument(
        "--autograd-strategy",
        default="auto",
        choices=AUTOGRAD_STRATEGIES,
        help="how the autograd engine runs its backward passes: auto times them on the "
        "first utterance of each length (fastest, but processes that time differently "
        "may round differently); a fixed one makes shards and resumed runs equal a whole "
        "run bit for bit",
    )
    p.add_argument(
        "--window",
        default=None,
        metavar="W|LAYER=W,...",
        help="window widths (default: the cone widths, or estimated for other models)",
    )
    p.add_argument(
        "--chunk-frames",
        type=int,
        default=METHOD.chunk_frames,
        help="target frames per engine call",
    )
    p.add_argument(
        "--label-time",
        default=METHOD.label_time,
        metavar="WHEN",
        help="when a phoneme label is read: where the model listens, from the input layer's "
        f"alignment ({', '.join(LABEL_TIMES[:-1])}), or at the receptive-field centre of "
        "the output frame (centre; centre+68 = 68 ms later); docs/method.md §1.5",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=METHOD.folds,
        metavar="K",
        help="keep the sums per fold: K >= 2 enables the cross-validated analyses, the sums "
        "grow K-fold; docs/method.md §6",
    )
    p.add_argument(
        "--fold-key",
        default=METHOD.fold_key,
        choices=("utterance", "speaker"),
        help="what the fold hash is taken of",
    )
    p.add_argument(
        "--fold-span",
        type=float,
        default=METHOD.fold_span,
        metavar="F",
        help=f"the central fraction of each window kept per fold at full resolution "
        f"(default {METHOD.fold_span:g}; 1: the whole window); docs/method.md §6",
    )
    p.add_argument(
        "--fold-bins",
        type=int,
        default=METHOD.fold_bins,
        metavar="N",
        help=f"the window columns outside that span, per fold, in time bins of ceil(W / N) "
        f"columns (default {METHOD.fold_bins}: not kept)",
    )
    p.add_argument("--no-naps", action="store_true", help="do not accumulate NAP sums")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="stop after N utterances (default: no limit)",
    )
    p.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
    p.set_defaults(func=run)


def _parse_window(spec: str | None):
    if spec is None:
        return None
    try:
        if "=" not in spec:
            return int(spec)
        out = {}
        for part in spec.split(","):
            name, _, value = part.partition("=")
            out[name.strip()] = int(value)
        return out
    except ValueError:
        raise GradnapError(f"--window {spec!r}: expected W or LAYER=W,LAYER=W") from None


def run(args: argparse.Namespace) -> int:
    from gradnap.asr.modelfile import load_model
    from gradnap.corpus import read_corpus
    from gradnap.engine import make_engine
    from gradnap.fileio import check_writable, remove_stale_temporaries
    from gradnap.method.run import GradNAP

    checkpoint = args.checkpoint or Path(f"{args.out}.partial")
    check_writable(args.out, "--out")  # before any work (the checkpoint: GradNAP.collect)
    check_writable(checkpoint, "--checkpoint")
    remove_stale_temporaries(args.out)
    model = load_model(args.model)
    corpus = read_corpus(args.corpus)
    if not corpus.utterances:
        raise GradnapError(f"{args.corpus}: no readable utterance")
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    engine = make_engine(
        model,
        layers,
        target=args.target,
        kind=args.engine,
        workers=args.workers,
        strategy=args.autograd_strategy,
    )
    nap = GradNAP(
        model,
        layers,
        target=args.target,
        examples=args.examples,
        groupings=args.groupings,
        min_count=args.min_count,
        window=_parse_window(args.window),
        engine=engine,
        naps=not args.no_naps,
        chunk_frames=args.chunk_frames,
        label_time=args.label_time,
        folds=args.folds,
        fold_key=args.fold_key,
        fold_span=args.fold_span,
        fold_bins=args.fold_bins,
    )
    nap.model_source = str(args.model)
    try:
        result = nap.collect(
            corpus,
            progress=not args.no_progress,
            checkpoint=checkpoint,
            checkpoint_every=args.checkpoint_every,
            checkpoint_seconds=args.checkpoint_seconds,
            resume=args.resume,
            shard=args.shard,
            limit=args.limit,
        )
    except KeyboardInterrupt:
        if nap.checkpointed_items is not None:
            print(
                f"gradnap: the checkpoint {nap.checkpoint_file} after {nap.checkpointed_items} "
                "items is kept; continue with --resume",
                file=sys.stderr,
            )
        raise
    if nap.rank == 0:
        try:
            result.save(args.out)
        except GradnapError as exc:  # a full disk, a vanished directory: keep the work
            raise GradnapError(f"{exc}; {nap.keep_collected()}") from exc
    if nap.checkpoint_file is not None:
        nap.checkpoint_file.unlink(missing_ok=True)
    if nap.rank == 0:
        p = result.meta.progress
        print(result.summary())
        print(f"{p.examples} frames in {p.seconds:.1f} s ({p.frames_per_second:.1f} frames/s)")
        print(f"wrote {args.out}")
    return 0
