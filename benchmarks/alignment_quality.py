"""Alignment quality on right and wrong transcripts of a synthesized corpus.

Aligns every utterance of a corpus (e.g. from ``gradnap corpus synth``) with its own
transcript and with four wrong ones - another utterance's transcript, ``yes``, the
first half of its words, its last word replaced by another utterance's last word - with
the quality thresholds switched off, and prints one JSON object: per transcript kind,
how many alignments failed (and why), the distribution of the
:class:`~gradnap.corpus.forced_alignment.AlignmentQuality` figures, and how many would
be rejected at the given thresholds (docs/alignment.md, "Alignment quality")::

    .venv/bin/gradnap corpus synth --out /tmp/synth60 --utterances 60 --seed 1
    .venv/bin/python benchmarks/alignment_quality.py /tmp/synth60
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter

import numpy as np

from gradnap.corpus import read_corpus
from gradnap.corpus.forced_alignment import Aligner, AlignmentError, boundary_errors
from gradnap.defaults import ALIGNMENT
from gradnap.features import load_audio

#: Thresholds whose rejection counts are printed.
SHARES = (0.2, 0.3, 0.4, 0.5)
SCORES = (-50.0, -55.0, -60.0)
KINDS = ("right", "other", "yes", "first_half", "last_word_swapped")


def transcripts(texts: list[str], k: int) -> dict[str, str]:
    """The transcripts tried for utterance ``k`` of ``texts``."""
    words = texts[k].split()
    other = texts[(k + 7) % len(texts)]
    swap = next(t.split()[-1] for t in texts[k + 1 :] + texts[:k] if t.split()[-1] != words[-1])
    return {
        "right": texts[k],
        "other": other,
        "yes": "yes",
        "first_half": " ".join(words[: max(1, len(words) // 2)]),
        "last_word_swapped": " ".join(words[:-1] + [swap]),
    }


def failure_kind(message: str) -> str:
    if "stops after" in message or "differ from the transcript" in message:
        return "words left out"
    if "could not be aligned" in message:
        return "no alignment"
    return message.split(":")[0][:40]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", help="a corpus with reference phone timings")
    parser.add_argument("--max-silence-share", type=float, default=ALIGNMENT.max_silence_share)
    parser.add_argument("--warn-phone-score", type=float, default=ALIGNMENT.warn_phone_score)
    parser.add_argument("--limit", type=int, default=None, help="first N utterances")
    args = parser.parse_args()

    corpus = read_corpus(args.corpus)
    utts = corpus.utterances[: args.limit]
    texts = [u.text for u in utts]
    free = dataclasses.replace(ALIGNMENT, max_silence_share=None, warn_phone_score=None)
    judge = dataclasses.replace(
        ALIGNMENT, max_silence_share=args.max_silence_share, warn_phone_score=args.warn_phone_score
    )
    aligner = Aligner(free)
    rows: dict[str, list[dict]] = {k: [] for k in KINDS}
    for k, utt in enumerate(utts):
        samples = load_audio(utt.audio_path)
        for kind, text in transcripts(texts, k).items():
            try:
                spans, quality = aligner.align_with_quality(samples, text)
            except AlignmentError as exc:
                rows[kind].append({"failed": failure_kind(str(exc))})
                continue
            row = dataclasses.asdict(quality) | {
                "rejected": quality.problem(judge) is not None,
                "warned": quality.warning(judge) is not None,
            }
            if kind == "right" and utt.phones:
                err = np.abs(boundary_errors(list(utt.phones), spans))
                row["median_error_ms"] = float(np.median(err) * 1000) if err.size else None
            rows[kind].append(row)

    def stats(values: list[float]) -> dict[str, float]:
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return {}
        return {
            q: round(float(np.percentile(v, p)), 3)
            for q, p in (("min", 0), ("p5", 5), ("median", 50), ("p95", 95), ("max", 100))
        }

    out: dict = {
        "corpus": str(args.corpus),
        "utterances": len(utts),
        "max_silence_share": args.max_silence_share,
        "warn_phone_score": args.warn_phone_score,
    }
    for kind, rs in rows.items():
        ok = [r for r in rs if "failed" not in r]
        entry = {
            "aligned": len(ok),
            "failed": dict(Counter(r["failed"] for r in rs if "failed" in r)),
            "rejected_by_quality": sum(r["rejected"] for r in ok),
            "kept_with_warning": sum(r["warned"] and not r["rejected"] for r in ok),
            "kept_silently": sum(not (r["rejected"] or r["warned"]) for r in ok),
            "rejected_at_silence_share": {
                str(t): sum(r["silence_share"] > t for r in ok) for t in SHARES
            },
            "warned_at_phone_score": {
                str(t): sum(r["phone_score"] < t for r in ok) for t in SCORES
            },
            "silence_share": stats([r["silence_share"] for r in ok]),
            "phone_score": stats([r["phone_score"] for r in ok]),
        }
        if kind == "right":
            errs = [r["median_error_ms"] for r in ok if r.get("median_error_ms") is not None]
            bad = [r["median_error_ms"] for r in ok if r["rejected"] and r.get("median_error_ms")]
            entry["median_boundary_error_ms"] = stats(errs)
            entry["rejected_median_boundary_error_ms"] = bad
        out[kind] = entry
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
