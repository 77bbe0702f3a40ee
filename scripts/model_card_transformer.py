"""Write the model card of the embedded ``transformer`` model from its training run.

    .venv/bin/python scripts/model_card_transformer.py ~/.cache/gradnap/runs/meltf > CARD.md
    .venv/bin/python scripts/model_card_transformer.py RUN --check 0.15   # exit 1 above goal

Every figure comes from the run: ``<run>/transformer.pt`` (config, parameters, training
settings and the per-epoch history in its metadata) and the ``<run>/eval-<split>[-lm].json``
files of ``scripts/train_embedded_transformer.sh``. ``--check MAX`` prints nothing and exits
with status 1 unless the greedy CER of the test split is at most ``MAX``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_card_tables import (  # noqa: E402
    history_table,
    pct,
    read_evals,
    split_table,
    voice_table,
)

from gradnap.asr.modelfile import read_model_file  # noqa: E402

CARD = """\
# gradnap embedded transformer model (`transformer.pt`)

A small convolution + self-attention CTC model (config `transformer`,
`gradnap.asr.transformer.ConvTransformer`) trained on gradnap's own synthesized English
corpus, the same corpus, features and trainer as the default Wav2Letter
(`MODEL_CARD.md`). It lets `gradnap demo --model transformer` show GradNAPs of an
attention model with no download; it is **not** a usable speech recogniser for real speech.

Load it with `gradnap.load_model("transformer")` or `--model transformer`.

## Model

| | |
|---|---|
| front end | {front} (each followed by a ReLU), "same"-style padding; one output frame per {stride} input frames ({frame_ms:.0f} ms) |
| position signal | depthwise Conv1d, kernel {pos_kernel}, GELU, added to the front end's output |
| encoder | {blocks} pre-LN blocks: {heads}-head self-attention over the whole utterance, feed-forward {dim}→{ff}→{dim} (GELU), dropout {dropout} |
| output | final layer norm, linear map to 29 classes: a–z, space, apostrophe, CTC blank (28) |
| parameters | {params:,} |
| input | 128 log-mel bins, 16 kHz, hop 128 (8 ms), z-normalised per utterance (as the default model) |
| weights | float16 ({size_mb:.2f} MB); loaded as float32. Figures below are of the float16-rounded weights. |

GradNAP layers (`gradnap.engine.default_layers`): `input`, {layers}.
The blocks' outputs are time-major and declared so; above the last block's attention every layer is
position-wise (the engines give it one-position windows); the other layers get windows of
0.5 s around `t*` (docs/method.md §1.3).

## Training

`./scripts/train_embedded_transformer.sh` reproduces it end to end. Its training step is
`gradnap train --config transformer` with {epochs} epochs, peak learning rate {lr:g}
({warmup} warm-up steps, cosine decay to {final:g} of it), batches of at most
{max_frames} padded frames (≤ {max_batch} utterances), gradient clipping at {clip:g},
SpecAugment-style masking ({fm} frequency masks of ≤ {fw} bins, {tm} time masks of
≤ {tw} frames), seed {seed}; {train_utts:,} training utterances of 14 voices (the voice
`{holdout}` and 5 % of the sentences held out), {threads} threads.
Training time: **{minutes:.0f} min** (forward, backward and update steps).

{history}

## Results

`gradnap eval` on the float16 checkpoint; corpus-level CER/WER. "beam" is lexicon-free CTC
beam search (beam {beam}){lm_note}.

{splits}

Per voice (all held-out sentences of the training voices, and the held-out voice):

{voices}

Summary: greedy CER **{test_cer}** on the {test_utts} test sentences of the training voices
(goal ≤ 15 %); {awb_cer} on the unseen voice `{holdout}`.

## Limitations

* Synthetic speech only; expect nothing on natural speech.
* A voice outside the training set is recognised much worse than the training voices.
"""


def card(run: Path) -> str:
    path = run / "transformer.pt"
    blob = read_model_file(path)
    cfg, meta = blob["config"], blob["metadata"]
    tc = meta["train_config"]
    evals = read_evals(run)
    test = evals["test"][0]
    lm = evals["test"][1]["beam"] if all(e[1] is not None for e in evals.values()) else None
    front = ", ".join(
        f"Conv1d {c} k={k} stride {s}"
        for c, k, s in zip(
            cfg["conv_channels"], cfg["conv_kernels"], cfg["conv_strides"], strict=True
        )
    )
    stride = 1
    for s in cfg["conv_strides"]:
        stride *= s
    blocks = [f"`blocks.{i}`" for i in range(cfg["num_blocks"])]
    convs = [f"`conv{i + 1}`" for i in range(len(cfg["conv_channels"]))]
    return CARD.format(
        front=front,
        stride=stride,
        frame_ms=stride * 8,
        pos_kernel=cfg["position_kernel"],
        blocks=cfg["num_blocks"],
        heads=cfg["heads"],
        dim=cfg["conv_channels"][-1],
        ff=cfg["ff_dim"],
        dropout=cfg["dropout"],
        params=meta["parameters"],
        size_mb=path.stat().st_size / 1e6,
        layers=", ".join([*convs, *blocks, "`head`"]),
        epochs=meta["epochs_done"],
        lr=tc["lr"],
        warmup=tc["warmup_steps"],
        final=tc["final_lr_fraction"],
        max_frames=tc["max_frames"],
        max_batch=tc["max_batch"],
        clip=tc["grad_clip"],
        fm=tc["freq_masks"],
        fw=tc["freq_mask_width"],
        tm=tc["time_masks"],
        tw=tc["time_mask_width"],
        seed=tc["seed"],
        train_utts=meta["train_utterances"],
        holdout=", ".join(meta.get("holdout_voices", [])) or "none",
        threads=meta.get("threads", "?"),
        minutes=meta["seconds"] / 60,
        history="\n".join(history_table(meta)),
        beam=test["beam"]["size"],
        lm_note=(
            f'; "+LM" adds a character {lm["char_lm_order"]}-gram LM of the training '
            f"transcripts, weight {lm['lm_weight']:g}"
            if lm is not None
            else ""
        ),
        splits="\n".join(split_table(evals)),
        voices="\n".join(voice_table(evals)),
        test_cer=pct(test["greedy"]["cer"]),
        test_utts=test["utterances"],
        awb_cer=pct(evals["holdout-voice"][0]["greedy"]["cer"]),
    )


def main(argv: list[str]) -> int:
    run = Path(argv[0]).expanduser()
    if len(argv) == 3 and argv[1] == "--check":
        cer = read_evals(run)["test"][0]["greedy"]["cer"]
        return 0 if cer <= float(argv[2]) else 1
    sys.stdout.write(card(run))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
