"""Print the model card's tables (training curve, CER/WER, per voice) from a training run.

    .venv/bin/python scripts/model_card_tables.py ~/.cache/gradnap/runs/default16k [MODEL]

Reads ``<run>/<MODEL>`` (default ``default.pt``; its metadata holds the per-epoch
history) and the ``<run>/eval-<split>[-lm].json`` files that ``scripts/train_default.sh``
and ``scripts/train_embedded_transformer.sh`` write (the ``-lm`` columns are left out
when those files are missing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gradnap.asr.modelfile import read_model_file

SPLITS = ("test", "heldout", "holdout-voice")


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def history_table(meta: dict) -> list[str]:
    """The training curve from a checkpoint's metadata."""
    lines = [
        "| epoch | train loss (CTC, per char) | valid loss (nats/utt) | valid CER | valid WER "
        "| cumulative training time | utt/s | learning rate at epoch end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in meta["history"]:
        lines.append(
            f"| {h['epoch']} | {h['train_loss']:.3f} | {h['valid_loss']:.1f} | "
            f"{pct(h['valid_cer'])} | {pct(h['valid_wer'])} | {h['seconds'] / 60:.1f} min | "
            f"{h['utterances_per_second']:.1f} | {h['lr']:.2e} |"
        )
    return lines


def read_evals(run: Path) -> dict[str, tuple[dict, dict | None]]:
    """Per split: the plain evaluation and the one with the character LM (or ``None``)."""
    evals = {}
    for split in SPLITS:
        plain = json.loads((run / f"eval-{split}.json").read_text())
        lm_file = run / f"eval-{split}-lm.json"
        lm = json.loads(lm_file.read_text()) if lm_file.is_file() else None
        evals[split] = (plain, lm)
    return evals


def split_table(evals: dict[str, tuple[dict, dict | None]]) -> list[str]:
    with_lm = all(lm is not None for _, lm in evals.values())
    head = "| split | utts | greedy CER | greedy WER | beam CER | beam WER |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if with_lm:
        head, rule = head + " +LM CER | +LM WER |", rule + "---:|---:|"
    lines = [head, rule]
    for split, (plain, lm) in evals.items():
        g, b = plain["greedy"], plain["beam"]
        row = (
            f"| {split} | {plain['utterances']} | {pct(g['cer'])} | {pct(g['wer'])} | "
            f"{pct(b['cer'])} | {pct(b['wer'])} |"
        )
        if with_lm and lm is not None:
            row += f" {pct(lm['beam']['cer'])} | {pct(lm['beam']['wer'])} |"
        lines.append(row)
    return lines


def voice_table(evals: dict[str, tuple[dict, dict | None]]) -> list[str]:
    with_lm = all(lm is not None for _, lm in evals.values())
    head = "| voice | utts | greedy CER | greedy WER | beam CER |"
    rule = "|---|---:|---:|---:|---:|"
    if with_lm:
        head, rule = head + " beam + LM CER |", rule + "---:|"
    lines = [head, rule]
    for split in ("heldout", "holdout-voice"):
        plain, lm = evals[split]
        for voice, s in plain["per_speaker"].items():
            row = (
                f"| {voice} | {s['utterances']} | {pct(s['cer_greedy'])} | "
                f"{pct(s['wer_greedy'])} | {pct(s['cer_beam'])} |"
            )
            if with_lm and lm is not None:
                row += f" {pct(lm['per_speaker'][voice]['cer_beam'])} |"
            lines.append(row)
    return lines


def main(run: Path, model: str = "default.pt") -> None:
    meta = read_model_file(run / model)["metadata"]
    evals = read_evals(run)
    print("\n\n".join("\n".join(t) for t in (history_table(meta), split_table(evals))))
    print()
    print("\n".join(voice_table(evals)))


if __name__ == "__main__":
    main(Path(sys.argv[1]).expanduser(), *sys.argv[2:3])
