"""Memory of a collection run: peak RSS over N and over 4N utterances.

A collection keeps only sums (docs/method.md §5), so its memory should not grow with the
corpus. This synthesizes a small corpus of 4N utterances (flite and eSpeak voices, in a
temporary directory), runs ``gradnap collect`` over its first N and over all 4N utterances
on the shipped default model, each in a fresh subprocess, and reads each subprocess's peak
resident set size (``getrusage``). Prints one JSON line: ``rss_n_mb``, ``rss_4n_mb``,
``growth`` (their ratio) and what was run::

    .venv/bin/python benchmarks/memory.py --n 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Runs ``gradnap collect`` with the given arguments in this process, then prints its peak
#: RSS in MB (Linux reports ``ru_maxrss`` in KiB) as the last line.
_CHILD = """
import resource, sys
from gradnap.cli import main
status = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(status)
"""


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """``(peak RSS in MB, wall seconds)`` of ``gradnap <args>`` in a fresh subprocess."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"gradnap {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="N: utterances of the smaller run")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--model", default="default", help="model for gradnap collect")
    args = parser.parse_args()
    from gradnap.corpus.synth import synthesize_corpus

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        report = synthesize_corpus(corpus, 4 * args.n, seed=args.seed, progress=False)
        runs = {}
        for n in (args.n, 4 * args.n):
            out = Path(tmp) / f"r{n}.npz"
            cli = ["-q", "collect", "--model", args.model, "--corpus", str(corpus)]
            cli += ["--out", str(out), "--limit", str(n), "--no-progress"]
            runs[n] = peak_rss_mb(cli)
    (rss_n, wall_n), (rss_4n, wall_4n) = runs[args.n], runs[4 * args.n]
    print(
        json.dumps(
            {
                "rss_n_mb": round(rss_n, 1),
                "rss_4n_mb": round(rss_4n, 1),
                "growth": round(rss_4n / rss_n, 3),
                "n": args.n,
                "audio_s_4n": round(report.audio_seconds, 1),
                "wall_s": [round(wall_n, 1), round(wall_4n, 1)],
                "model": args.model,
                "load_avg_1min": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
