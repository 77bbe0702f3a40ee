"""Phone label time: which time of an example should name its phoneme label?

A CTC model emits a letter at an offset from its acoustic evidence, so the phone at the
receptive-field centre of the output frame (the ``phoneme`` grouping's label time today,
docs/method.md §1.5) is often the phone before the one the model listens to. This script
compares label-time definitions on the demo corpus and the shipped model. Each example is
a non-blank output frame ``tau`` (its predicted letter); ``m(t) = sum_f |S_0[f, t]|`` is
its input sensitivity mass at input frame ``t``, taken over the frame's input cone inside
the utterance. The definitions (input frames; seconds = frames x 8 ms):

- ``centre``: the receptive-field centre ``Geometry.centre(tau, L)`` (today);
- ``peak``: the input alignment centre ``t* = argmax_t m(t)`` (first maximum, §1.3);
- ``centroid``: the mass-weighted mean of ``t``;
- ``median``: the mass-weighted median of ``t`` (smallest ``t`` with half the mass at or
  before it);
- ``mass``: not a time but a span: the phone span holding the largest share of the mass
  (``m`` summed per span, first maximum);
- ``centre+offset``: ``centre`` plus the model's median listening offset ``t* - centre``,
  estimated on a separate calibration part of the corpus (every 4th utterance in id
  order); all metrics are computed on the other utterances.

Metrics per definition on the evaluation utterances: H(phone | letter) and
H(letter | phone) in bits (plug-in estimates over the labelled examples), purity (the
fraction of labelled examples whose phone is the most frequent phone of their letter),
the fraction of examples whose label differs from ``centre``'s (an unlabelled example
counts as the label ``None``), the number of unlabelled examples, the fraction labelled
``SIL``, the mean length of the labelled phone spans (ms), and where the labelled phone
sits relative to the model's alignment time: ``t* - centre of the labelled phone's span``
in ms (mean, and mean absolute; 0 = the labelled phone is where the model listens).
Also the listening offset ``t* - centre`` (ms; median and IQR) on all, calibration and
evaluation utterances, H(phone | letter) on two halves of the evaluation utterances
(stability), and H(phone | letter) of ``centre`` plus fixed offsets 0-160 ms (a
diagnostic; not used to choose the offset).

Prints one JSON line per definition, one for the listening offset, then a markdown
table::

    PYTHONPATH=src .venv/bin/python benchmarks/label_time.py            # 400 utterances
    PYTHONPATH=src .venv/bin/python benchmarks/label_time.py --utterances 20

The pure functions (``input_mass``, ``peak_time``, ``centroid_time``, ``median_time``,
``mass_span``, ``span_index``, ``label_spans``) take numpy arrays and phone spans only,
so they can move into :mod:`gradnap.method.groupings` unchanged.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

#: Label-time definitions, in table order.
DEFINITIONS = ("centre", "peak", "centroid", "median", "mass", "centre+offset")
#: Definitions that read the example's own input sensitivity.
EVIDENCE_BASED = ("peak", "centroid", "median", "mass")

FRAME_SECONDS = 0.008


# --------------------------------------------------------------------------- pure functions


def input_mass(grads) -> np.ndarray:
    """Input sensitivity mass ``m[i, j] = sum_f |grads[i, f, j]|``, ``(n, W)`` float64,
    from an input window's grads ``(n, F, W)`` (torch tensor or array)."""
    g = grads.detach().cpu().numpy() if hasattr(grads, "detach") else np.asarray(grads)
    return np.abs(g.astype(np.float64, copy=False)).sum(axis=1)


def evidence(mass: np.ndarray, start: np.ndarray, length: int):
    """The library's :class:`~gradnap.method.groupings.InputEvidence` of mass windows
    ``(n, W)`` at input positions ``start[i] + j`` (the cone engine's window is the cone):
    positions outside the utterance are not searched, ``t*`` is the first maximum."""
    from gradnap.method.groupings import InputEvidence

    pos = np.asarray(start, dtype=np.int64)[:, None] + np.arange(mass.shape[1])[None, :]
    score = np.where((pos >= 0) & (pos < length), mass, -np.inf)
    peak = pos[np.arange(len(pos)), score.argmax(axis=1)].astype(np.float64)
    return InputEvidence(peak=peak, score=score, start=np.asarray(start, dtype=np.int64))


def label_time_of(definition: str, offset: float) -> str:
    """The library's ``label_time`` for a definition (``offset`` in input frames)."""
    if definition == "centre+offset":
        return f"centre{offset * FRAME_SECONDS * 1000:+g}"
    return definition


# --------------------------------------------------------------------------- metrics


def conditional_entropy(x: list, y: list) -> float:
    """Plug-in ``H(x | y)`` in bits."""
    joint = Counter(zip(x, y, strict=True))
    ycount = Counter(y)
    n = len(x)
    if n == 0:
        return float("nan")
    h = 0.0
    for (_, yv), c in joint.items():
        h -= c / n * np.log2(c / ycount[yv])
    return float(h)


def purity(phones: list, letters: list) -> float:
    """Fraction of examples whose phone is the most frequent phone of their letter."""
    by_letter: dict = defaultdict(Counter)
    for p, ltr in zip(phones, letters, strict=True):
        by_letter[ltr][p] += 1
    if not phones:
        return float("nan")
    return sum(c.most_common(1)[0][1] for c in by_letter.values()) / len(phones)


def quartiles(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"n": 0}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {
        "n": int(v.size),
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "mean": float(v.mean()),
    }


# --------------------------------------------------------------------------- data


def corpus_root() -> Path:
    from gradnap.corpus.synth import synthesize_corpus
    from gradnap.defaults import CACHE_DIR, DEMO

    root = CACHE_DIR / "corpora" / f"demo-s{DEMO.seed}-n{DEMO.utterances}"
    if not root.exists():
        synthesize_corpus(root, utterances=DEMO.utterances, seed=DEMO.seed, progress=False)
    return root


def collect(utterances: int | None, chunk: int, log=sys.stderr) -> list[dict]:
    """Per utterance: id, letters, centre, t*, mass windows, start, length, phones."""
    import gradnap
    from gradnap.alphabet import class_label
    from gradnap.method.examples import select_examples
    from gradnap.method.groupings import FrameClock

    model = gradnap.load_model("default")
    engine = gradnap.make_engine(model, ["input"])
    geometry = engine.chain.geometry
    corpus = gradnap.read_corpus(corpus_root())
    utts = sorted(corpus, key=lambda u: u.id)
    if utterances is not None:
        utts = utts[:utterances]
    out = []
    t0 = time.perf_counter()
    for k, utt in enumerate(utts):
        x = corpus.features(utt)
        fwd = engine.forward(x)
        frames, classes = select_examples(fwd.probs)
        masses, starts = [], []
        for a in range(0, len(frames), chunk):
            fr, cl = frames[a : a + chunk], classes[a : a + chunk]
            win = engine.sensitivities(fwd, fr, cl)["input"]
            masses.append(input_mass(win.grads))
            starts.append(win.start.cpu().numpy())
        f = frames.numpy()
        W = geometry.cone_width(0)
        out.append(
            {
                "id": utt.id,
                "phones": list(utt.phones or ()),
                "letters": [class_label(int(c)) for c in classes],
                "frames": f,
                "clock": FrameClock.from_geometry(geometry),
                "centre": np.array([geometry.centre(float(t), geometry.num_layers) for t in f]),
                "mass": np.concatenate(masses) if masses else np.zeros((0, W)),
                "start": np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64),
                "length": int(x.shape[-1]),
            }
        )
        if (k + 1) % 50 == 0:
            n = sum(len(u["letters"]) for u in out)
            print(
                f"{k + 1} utterances, {n} examples, {time.perf_counter() - t0:.0f} s",
                file=log,
                flush=True,
            )
    return out


def evaluate(data: list[dict], offset: float) -> tuple[dict, dict]:
    """Metrics per definition over ``data`` and the listening offsets (ms); the labels
    are the library's (:func:`gradnap.method.groupings.label_spans`)."""
    from gradnap.method.groupings import label_spans

    fs = FRAME_SECONDS
    labels = {d: [] for d in DEFINITIONS}
    span_offsets = {d: [] for d in DEFINITIONS}
    span_lengths = {d: [] for d in DEFINITIONS}
    letters: list[str] = []
    listen: list[float] = []
    for u in data:
        n = len(u["letters"])
        if n == 0:
            continue
        letters += u["letters"]
        ev = evidence(u["mass"], u["start"], u["length"])
        tstar = ev.peak
        listen += list((tstar - u["centre"]) * fs * 1000)
        phones = u["phones"]
        mids = np.array([(p.start + p.end) / 2 for p in phones]) if phones else np.zeros(0)
        durs = np.array([p.end - p.start for p in phones]) if phones else np.zeros(0)
        for d in DEFINITIONS:
            if not phones:
                labels[d] += [None] * n
                continue
            idx = label_spans(label_time_of(d, offset), phones, u["frames"], u["clock"], ev)
            labels[d] += [phones[i].phone if i >= 0 else None for i in idx]
            ok = idx >= 0
            span_offsets[d] += list((tstar[ok] * fs - mids[idx[ok]]) * 1000)
            span_lengths[d] += list(durs[idx[ok]] * 1000)
    rows = {}
    for d in DEFINITIONS:
        lab = labels[d]
        keep = [i for i, p in enumerate(lab) if p is not None]
        ph = [lab[i] for i in keep]
        le = [letters[i] for i in keep]
        so = np.asarray(span_offsets[d])
        rows[d] = {
            "definition": d,
            "examples": len(lab),
            "H_phone_given_letter": conditional_entropy(ph, le),
            "H_letter_given_phone": conditional_entropy(le, ph),
            "purity": purity(ph, le),
            "differs_from_centre": float(
                np.mean([a != b for a, b in zip(lab, labels["centre"], strict=True)])
            ),
            "unlabelled": len(lab) - len(keep),
            "sil_fraction": float(np.mean([p == "SIL" for p in ph])) if ph else float("nan"),
            "tstar_minus_span_centre_ms": float(so.mean()) if so.size else float("nan"),
            "abs_tstar_minus_span_centre_ms": float(np.abs(so).mean()) if so.size else float("nan"),
            "phones": len(set(ph)),
            "mean_span_ms": float(np.mean(span_lengths[d])) if ph else float("nan"),
        }
    return rows, quartiles(listen)


def offset_sweep(data: list[dict], offsets) -> dict:
    """H(phone | letter) of ``centre`` + each offset (input frames) over ``data``: a
    diagnostic of how sharp the optimum of a fixed offset is (choosing the offset here
    would fit it to the evaluation data)."""
    from gradnap.method.groupings import phone_index

    out = {}
    for off in offsets:
        ph, le = [], []
        for u in data:
            if not u["phones"]:
                continue
            idx = phone_index(u["phones"], (u["centre"] + off) * FRAME_SECONDS)
            for i, ltr in zip(idx.tolist(), u["letters"], strict=True):
                if i >= 0:
                    ph.append(u["phones"][i].phone)
                    le.append(ltr)
        out[f"{off * FRAME_SECONDS * 1000:g}"] = round(conditional_entropy(ph, le), 3)
    return out


def table(rows: dict) -> str:
    head = (
        "| definition | H(phone\\|letter) bits | H(letter\\|phone) bits | purity | "
        "differs from centre | unlabelled | SIL | mean span ms | "
        "t* − span centre ms (mean / mean abs) |"
    )
    lines = [head, "|" + "---|" * 9]
    for d, r in rows.items():
        lines.append(
            f"| `{d}` | {r['H_phone_given_letter']:.2f} | {r['H_letter_given_phone']:.2f} | "
            f"{r['purity']:.3f} | {r['differs_from_centre']:.1%} | {r['unlabelled']} | "
            f"{r['sil_fraction']:.1%} | {r['mean_span_ms']:.0f} | "
            f"{r['tstar_minus_span_centre_ms']:+.0f} / "
            f"{r['abs_tstar_minus_span_centre_ms']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--utterances", type=int, default=None, help="first N utterances (id order)")
    ap.add_argument("--chunk", type=int, default=128, help="frames per sensitivities call")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    data = collect(args.utterances, args.chunk)
    seconds = time.perf_counter() - t0
    calib = [u for i, u in enumerate(data) if i % 4 == 0]
    held = [u for i, u in enumerate(data) if i % 4 != 0]
    listen_calib = []
    for u in calib:
        ev = evidence(u["mass"], u["start"], u["length"])
        tstar = ev.peak
        listen_calib += list(tstar - u["centre"])
    offset = float(np.nanmedian(listen_calib)) if listen_calib else 0.0
    rows, listen_eval = evaluate(held, offset)
    # Stability: the same metrics on two halves of the evaluation utterances.
    halves = [evaluate(held[h::2], offset)[0] for h in (0, 1)]
    for d, r in rows.items():
        r["H_phone_given_letter_halves"] = [h[d]["H_phone_given_letter"] for h in halves]
    _, listen_all = evaluate(data, offset)
    for r in rows.values():
        print(json.dumps(r))
    print(
        json.dumps(
            {
                "listening_offset_ms": {
                    "all": listen_all,
                    "calibration": quartiles(np.asarray(listen_calib) * FRAME_SECONDS * 1000),
                    "evaluation": listen_eval,
                },
                "centre_offset_frames": offset,
                "centre_offset_ms": offset * FRAME_SECONDS * 1000,
                "H_phone_given_letter_by_fixed_offset_ms": offset_sweep(held, range(0, 21, 2)),
                "utterances": {
                    "all": len(data),
                    "calibration": len(calib),
                    "evaluation": len(held),
                },
                "seconds": round(seconds, 1),
            }
        )
    )
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
