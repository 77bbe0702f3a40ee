"""Print the model card's tables (training curve, CER/WER, per voice) from a training run.

    .venv/bin/python scripts/model_card_tables.py ~/.cache/gradnap/runs/default16k

Reads ``<run>/default.pt`` (its metadata holds the per-epoch history) and the
``<run>/eval-<split>[-lm].json`` files that ``scripts/train_default.sh`` writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gradnap.asr.modelfile import read_model_file


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main(run: Path) -> None:
    meta = read_model_file(run / "default.pt")["metadata"]
    print(
        "| epoch | train loss (CTC, per char) | valid loss (nats/utt) | valid CER | valid WER "
        "| cumulative training time | utt/s | learning rate at epoch end |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for h in meta["history"]:
        print(
            f"| {h['epoch']} | {h['train_loss']:.3f} | {h['valid_loss']:.1f} | "
            f"{_pct(h['valid_cer'])} | {_pct(h['valid_wer'])} | {h['seconds'] / 60:.1f} min | "
            f"{h['utterances_per_second']:.1f} | {h['lr']:.2e} |"
        )
    print()
    print("| split | utts | greedy CER | greedy WER | beam CER | beam WER | +LM CER | +LM WER |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    evals = {}
    for split in ("test", "heldout", "holdout-voice"):
        plain = json.loads((run / f"eval-{split}.json").read_text())
        lm = json.loads((run / f"eval-{split}-lm.json").read_text())
        evals[split] = (plain, lm)
        g, b, lb = plain["greedy"], plain["beam"], lm["beam"]
        print(
            f"| {split} | {plain['utterances']} | {_pct(g['cer'])} | {_pct(g['wer'])} | "
            f"{_pct(b['cer'])} | {_pct(b['wer'])} | {_pct(lb['cer'])} | {_pct(lb['wer'])} |"
        )
    print()
    print("| voice | utts | greedy CER | greedy WER | beam CER | beam + LM CER |")
    print("|---|---:|---:|---:|---:|---:|")
    for split in ("heldout", "holdout-voice"):
        plain, lm = evals[split]
        for voice, s in plain["per_speaker"].items():
            print(
                f"| {voice} | {s['utterances']} | {_pct(s['cer_greedy'])} | "
                f"{_pct(s['wer_greedy'])} | {_pct(s['cer_beam'])} | "
                f"{_pct(lm['per_speaker'][voice]['cer_beam'])} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]).expanduser())
