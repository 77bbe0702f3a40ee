"""Synthesis throughput: utterances/s and real-time factor, one process against a pool.

Writes the same small corpus twice in one run - once with ``jobs=1`` (the reference)
and once with ``--jobs`` processes - checks that both are byte-identical and prints one
JSON line with the rates, the parallel speed-up (a ratio against the reference, so it
holds on a busy machine) and CPU seconds per utterance (this process and its children,
flite included)::

    .venv/bin/python benchmarks/synthesis.py --utterances 150 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from gradnap.corpus.synth import synthesize_corpus


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _run(out: Path, args: argparse.Namespace, jobs: int) -> dict:
    cpu0, t0 = _cpu(), time.perf_counter()
    report = synthesize_corpus(
        out,
        utterances=args.utterances,
        seed=args.seed,
        voices=args.voices,
        jobs=jobs,
        progress=False,
    )
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return {
        "jobs": jobs,
        "utterances": report.synthesized,
        "audio_s": round(report.audio_seconds, 1),
        "wall_s": round(wall, 2),
        "utt_per_s": round(report.synthesized / wall, 2),
        "real_time_factor": round(report.audio_seconds / wall, 1),
        "cpu_s_per_utt": round(cpu / max(report.synthesized, 1), 4),
    }


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--voices", nargs="+", default=None)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: imports, vocabulary, eSpeak initialisation
        synthesize_corpus(
            Path(tmp) / "warm", 2, seed=99, voices=["slt", "en-us"], jobs=1, progress=False
        )
        ref = _run(Path(tmp) / "one", args, 1)
        par = _run(Path(tmp) / "pool", args, args.jobs)
        identical = _tree(Path(tmp) / "one") == _tree(Path(tmp) / "pool")
    cores = os.cpu_count() or 1
    result = {
        "reference": ref,
        "pool": par,
        "speedup": round(ref["wall_s"] / par["wall_s"], 2),
        "identical": identical,
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "cores": cores,
        # what 3,000 utterances would take with every core free, from the CPU cost
        "est_3000_utt_min_unloaded": round(3000 * ref["cpu_s_per_utt"] / cores / 60, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
