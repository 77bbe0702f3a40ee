"""Throughput of the sensitivity engines against the per-frame autograd reference.

For each model config (random weights, one utterance of ``--seconds`` seconds, every
output frame a target), measured in one process:

- ``cone_fps``: frames/s of the cone engine, end to end per utterance (its no-grad
  forward plus the cone backward of every frame in chunks of ``--chunk`` frames);
- ``autograd_fps``: frames/s of the generic autograd engine (its strategy chosen by its
  own calibration on a first run), from the time per frame of ``--autograd-frames``
  frames plus the per-utterance fixed cost (forward, graph), extrapolated to all frames;
- ``reference_fps``: frames/s of the per-frame reference (one forward with a graph, one
  full backward per frame), from ``--reference-frames`` frames, extrapolated likewise;
- ``speedup_vs_reference`` = ``cone_fps / reference_fps``;
- ``ceiling_fps``: cone FLOPs per frame (2 x multiply-adds of the transposed
  convolutions restricted to the cone, input layer included) divided by the GEMM rate
  measured in the same run: ``torch.matmul`` of each layer's weight matrix
  ``(C_in, C_out)`` with a ``(C_out, 8192)`` right-hand side (the shape of the cone
  engine's GEMMs: ``W x n`` columns), weighted by the layer's share of the cone FLOPs,
  with the same threading as the engine (``--workers`` single-threaded GEMMs at once);
- ``ceiling_fraction`` = ``cone_fps / ceiling_fps``; GEMM and engine runs alternate and
  the fraction is the median of the per-round ratios, so a shared machine's load affects
  both alike. The same fraction per CPU-second (cone FLOPs per CPU-second of the
  process over GEMM FLOPs per CPU-second of a GEMM thread), which other processes on the
  machine disturb much less, is printed on stderr;
- ``collect_fps``: frames/s of :class:`gradnap.collect.GradNAP` end to end (features,
  engine, alignment, accumulators for graphemes and phonemes, ``examples="all"``) on a
  small corpus synthesized with flite (``null`` when flite is missing or ``--no-collect``).

Prints one JSON line per config on stdout (timings breakdown and the profile, with
``--profile``, on stderr)::

    .venv/bin/python benchmarks/engine.py
    .venv/bin/python benchmarks/engine.py --configs paper --workers 2 --profile
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from gradnap.asr.model import build_model
from gradnap.defaults import FEATURES, METHOD
from gradnap.engine import AutogradEngine, ConeEngine, ReferenceEngine, default_layers
from gradnap.features import num_frames

GEMM_COLUMNS = 8192


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def run_utterance(engine, x: torch.Tensor, chunk: int, limit: int | None = None) -> tuple:
    """Seconds for the forward pass and for the sensitivities of every (or ``limit``) frame."""
    t0 = time.perf_counter()
    fwd = engine.forward(x)
    t1 = time.perf_counter()
    classes = fwd.probs.argmax(0)
    n = classes.shape[0] if limit is None else min(limit, classes.shape[0])
    for a in range(0, n, chunk):
        frames = torch.arange(a, min(n, a + chunk))
        engine.sensitivities(fwd, frames, classes[frames])
    return t1 - t0, time.perf_counter() - t1, n, classes.shape[0]


def extrapolated_fps(engine, x: torch.Tensor, frames: int, t_out: int, tag: str) -> float:
    """Frames/s of a slow engine over a whole utterance from a few frames: the forward
    pass and the first call (which may build a graph) are fixed costs; the time per frame
    is that of a second call on ``frames`` more frames."""
    t0 = time.perf_counter()
    fwd = engine.forward(x)
    classes = fwd.probs.argmax(0)
    first = torch.arange(0, 1)
    engine.sensitivities(fwd, first, classes[first])
    t1 = time.perf_counter()
    more = torch.arange(1, 1 + frames)
    engine.sensitivities(fwd, more, classes[more])
    t2 = time.perf_counter()
    per_frame = (t2 - t1) / frames
    fixed = (t1 - t0) - per_frame
    log(f"{tag}: {fixed:.2f} s per utterance + {per_frame:.3f} s per frame ({frames} timed)")
    return t_out / (fixed + per_frame * t_out)


def gemm_rate(engine: ConeEngine, workers: int, seconds: float = 1.0) -> tuple[float, float]:
    """GFLOP/s of ``torch.matmul`` on the layers' weight shapes (see the module doc):
    ``workers`` threads with one intra-op thread each, all at once (0: one thread with
    torch's intra-op threads). Returns (wall-clock rate of all threads together, rate
    per CPU-second)."""
    shapes = []
    geom = engine.geometry
    for i, st in enumerate(engine.chain.stages[1:], start=1):
        c_out, c_in, k = st.weight.shape
        shapes.append((c_in, c_out, 2.0 * c_out * c_in * k * geom.cone_width(i)))
    total = sum(f for *_, f in shapes)
    mats = {(ci, co): (torch.randn(ci, co), torch.randn(co, GEMM_COLUMNS)) for ci, co, _ in shapes}

    def rate_of(ci: int, co: int, budget: float) -> tuple[float, float]:
        a, b = mats[(ci, co)]
        out = torch.empty(ci, GEMM_COLUMNS)
        torch.matmul(a, b, out=out)
        reps, t0, c0 = 0, time.perf_counter(), time.thread_time()
        while True:
            torch.matmul(a, b, out=out)
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= budget and reps >= 2:
                fl = 2.0 * ci * co * GEMM_COLUMNS * reps
                return fl / dt, fl / max(time.thread_time() - c0, 1e-9)

    def weighted(budget: float) -> tuple[float, float]:
        # time per unit of cone work = sum over layers of (share / rate)
        rates = [(f / total, rate_of(ci, co, budget * f / total)) for ci, co, f in shapes]
        wall = 1.0 / sum(share / r[0] for share, r in rates)
        cpu = 1.0 / sum(share / r[1] for share, r in rates)
        return wall, cpu

    if workers == 0:  # torch's intra-op threads: CPU time of the whole process
        c0 = time.process_time()
        t0 = time.perf_counter()
        wall, _ = weighted(seconds)
        cpu = wall * (time.perf_counter() - t0) / (time.process_time() - c0)
        return wall / 1e9, cpu / 1e9
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rates = [(0.0, 0.0)] * workers

    def work(w: int) -> None:
        torch.set_num_threads(1)  # per thread: new threads start with OpenMP's default
        rates[w] = weighted(seconds)

    try:
        ts = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        torch.set_num_threads(threads)
    return sum(r[0] for r in rates) / 1e9, statistics.mean(r[1] for r in rates) / 1e9


def square_gemm_rate(workers: int, seconds: float = 1.0) -> float:
    """GFLOP/s of 2048 x 2048 matrix products with the engine's threading."""
    a = torch.randn(2048, 2048)
    flop = 2.0 * 2048**3

    def run() -> float:
        torch.matmul(a, a)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or reps < 2:
            torch.matmul(a, a)
            reps += 1
        return flop * reps / (time.perf_counter() - t0)

    if workers == 0:
        return run() / 1e9
    rates = [0.0] * workers

    def work(w: int) -> None:
        torch.set_num_threads(1)
        rates[w] = run()

    threads = torch.get_num_threads()
    try:
        ts = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        torch.set_num_threads(threads)
    return sum(rates) / 1e9


def profile_chunk(engine: ConeEngine, x: torch.Tensor, chunk: int) -> None:
    """torch.profiler table of the cone backward of two chunks, by operator and shape.

    Profiled with one worker in the calling thread (the profiler does not follow the
    worker threads); the work is the same.
    """
    from torch.profiler import ProfilerActivity, profile

    single = ConeEngine(engine.model, engine.layers, engine.target, workers=1)
    fwd = single.forward(x)
    classes = fwd.probs.argmax(0)
    frames = torch.arange(min(chunk, classes.shape[0]))
    single.sensitivities(fwd, frames, classes[frames])
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(2):
            single.sensitivities(fwd, frames, classes[frames])
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=16, max_name_column_width=20
    )
    log(table)


def collect_fps(model, utterances: int, workers: int | None, chunk: int) -> float | None:
    """End-to-end frames/s of GradNAP.collect on a small flite corpus (None without flite)."""
    if shutil.which("flite") is None:
        log("collect: flite not found, collect_fps = null")
        return None
    from gradnap.corpus.synth import synthesize_corpus
    from gradnap.engine import make_engine
    from gradnap.method.run import GradNAP

    with tempfile.TemporaryDirectory(prefix="gradnap-bench-") as tmp:
        root = Path(tmp) / "corpus"
        synthesize_corpus(root, utterances=utterances, seed=0, voices=["flite"], progress=False)
        layers = default_layers(model)
        engine = make_engine(model, layers, workers=workers)
        nap = GradNAP(
            model,
            layers,
            engine=engine,
            groupings=("grapheme", "phoneme"),
            examples="all",
            chunk_frames=chunk,
        )
        nap.collect(root, progress=False, limit=1)  # warm-up (feature code, caches)
        t0 = time.perf_counter()
        nap.collect(root, progress=False)
        dt = time.perf_counter() - t0
        frames = nap.progress["examples"]
        log(f"collect: {nap.progress['utterances']} utterances, {frames} frames, {dt:.1f} s")
        return frames / dt


def bench_config(name: str, args) -> dict:
    torch.manual_seed(0)
    model = build_model(name, seed=0)
    layers = default_layers(model)
    n_in = num_frames(int(args.seconds * FEATURES.sample_rate))
    x = torch.randn(model.config.n_features, n_in)
    cone = ConeEngine(model, layers, workers=args.workers)
    workers = cone.resolved_workers()
    flops = cone.flops_per_frame
    log(f"[{name}] {n_in} input frames, cone {flops / 1e6:.0f} MFLOP/frame, workers={workers}")

    run_utterance(cone, x, args.chunk, limit=args.chunk)  # warm-up
    cone_times, ratios, rates, cpu_ratios = [], [], [], []
    for r in range(args.repeats):
        rate, cpu_rate = gemm_rate(cone, workers, seconds=args.gemm_seconds)
        c0 = time.process_time()
        t_fwd, t_bwd, n, t_out = run_utterance(cone, x, args.chunk)
        cpu = time.process_time() - c0
        fps = t_out / (t_fwd + t_bwd)
        cone_times.append((t_fwd, t_bwd))
        rates.append(rate)
        ratios.append(fps / (rate * 1e9 / flops))
        cpu_ratios.append(flops * t_out / cpu / (cpu_rate * 1e9))
        log(
            f"[{name}] round {r}: GEMM {rate:.1f} GFLOP/s, cone {fps:.1f} frames/s "
            f"(forward {t_fwd:.2f} s, backward {t_bwd:.2f} s, {t_out} frames), "
            f"cone backward {flops * t_out / t_bwd / 1e9:.1f} GFLOP/s; per CPU-second: "
            f"GEMM {cpu_rate:.1f} GFLOP, cone {flops * t_out / cpu / 1e9:.1f} GFLOP "
            f"(fraction {cpu_ratios[-1]:.2f}; CPU {cpu:.1f} s, wall {t_fwd + t_bwd:.1f} s)"
        )
    cone_fps = statistics.median(t_out / (a + b) for a, b in cone_times)
    rate = statistics.median(rates)
    log(
        f"[{name}] ceiling fraction: wall-clock {statistics.median(ratios):.3f}, "
        f"per CPU-second {statistics.median(cpu_ratios):.3f}"
    )
    square = square_gemm_rate(workers)
    log(
        f"[{name}] for context: 2048x2048 GEMM {square:.1f} GFLOP/s -> "
        f"{square * 1e9 / flops:.1f} frames/s; cone at {cone_fps * flops / square / 1e9:.2f} of it"
    )
    if args.profile:
        profile_chunk(cone, x, args.chunk)

    auto = AutogradEngine(model, layers, batch_frames=args.autograd_frames)
    run_utterance(auto, x, args.autograd_frames, args.autograd_frames)  # calibrates
    choice = auto.calibration.choose(t_out) if auto.calibration else auto.strategy
    autograd_fps = extrapolated_fps(auto, x, args.autograd_frames, t_out, f"[{name}] autograd")
    log(f"[{name}] autograd strategy: {choice}")

    ref = ReferenceEngine(model, layers)
    reference_fps = extrapolated_fps(ref, x, args.reference_frames, t_out, f"[{name}] reference")
    del auto, ref

    cfps = None
    if not args.no_collect:
        cfps = collect_fps(model, args.collect_utterances, args.workers, args.chunk)
    ceiling = rate * 1e9 / flops
    return {
        "config": name,
        "cone_fps": round(cone_fps, 2),
        "autograd_fps": round(autograd_fps, 3),
        "reference_fps": round(reference_fps, 3),
        "speedup_vs_reference": round(cone_fps / reference_fps, 1),
        "ceiling_fps": round(ceiling, 1),
        "ceiling_fraction": round(statistics.median(ratios), 3),
        "collect_fps": None if cfps is None else round(cfps, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="paper,default", help="model configs (comma-separated)")
    p.add_argument("--seconds", type=float, default=10.0, help="utterance length")
    p.add_argument("--chunk", type=int, default=METHOD.chunk_frames, help="frames per chunk")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="cone engine worker threads (default: one per intra-op thread; 0: none)",
    )
    p.add_argument("--repeats", type=int, default=3, help="alternating GEMM/engine rounds")
    p.add_argument("--gemm-seconds", type=float, default=1.0, help="GEMM timing per round")
    p.add_argument("--autograd-frames", type=int, default=16, help="frames timed (autograd)")
    p.add_argument("--reference-frames", type=int, default=8, help="frames timed (reference)")
    p.add_argument("--collect-utterances", type=int, default=8, help="synthesized corpus size")
    p.add_argument("--no-collect", action="store_true", help="skip the collect measurement")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of one chunk")
    args = p.parse_args(argv)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    for name in args.configs.split(","):
        print(json.dumps(bench_config(name.strip(), args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
