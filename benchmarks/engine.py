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
- ``peak_gflops``: the machine's peak GEMM rate, measured in the same run: 2048 x 2048
  float32 ``torch.matmul`` with the engine's threading (as many single-threaded worker
  threads at once as the engine uses, their rates summed; with ``--workers 0`` one
  thread with torch's intra-op threads);
- ``ceiling_fps`` = ``peak_gflops * 1e9 / cone_flops_per_frame`` (2 x multiply-adds of
  the transposed convolutions restricted to the cone, input layer included; the forward
  pass is not counted, so the engine can never reach it);
- ``ceiling_fraction`` = ``cone_fps / ceiling_fps``. GEMM and engine runs alternate
  (``--repeats`` rounds) and both are medians over the rounds, so a shared machine's load
  affects both alike. The median of the per-round ratios and the same fraction per
  CPU-second (cone FLOPs per CPU-second of the process over GEMM FLOPs per CPU-second of
  a GEMM thread), which other processes disturb much less, are printed on stderr;
- ``captum_fps``: frames/s of what a Captum user would write: one
  ``captum.attr.LayerGradientXActivation`` call per target frame over every block
  (``layer1 .. layer11``; ``attribute_to_layer_input=False``), the forward function the
  model's softmax ``(B, K, T')`` and ``target=(class, frame)``; each call is a forward and
  a full backward, timed on ``--captum-frames`` frames after one warm-up call and
  extrapolated to all frames; with torch's intra-op threads and with one thread, the
  faster counts (``null`` without Captum);
- ``speedup_vs_captum`` = ``cone_fps / captum_fps``;
- ``collect_fps``: frames/s of the collection end to end (features from the audio file,
  engine, alignment, accumulators for graphemes and phonemes, ``examples="all"``; what
  :meth:`gradnap.method.run.GradNAP.collect` does per utterance) on a small corpus
  synthesized with flite (``null`` when flite is missing or ``--no-collect``);
  ``collect_fraction``: its frames/s over the cone engine's on the same utterances
  (forward and every frame's sensitivities from precomputed features), the two
  alternating per utterance, the median of the per-round ratios (the ratio of CPU times
  is printed on stderr).

**Transformer configs** (``wav2vec2-4x256``: a wav2vec 2.0 CTC model with the base
model's conv front end, 512 channels x 7 layers, and 4 encoder layers 256 wide, 4 heads,
feed-forward 1024, 32 outputs; random weights, ``--seconds`` of random waveform; needs
``transformers``) have no cone engine. Their row, on the default layers (the front end's
last conv block, every encoder layer, ``lm_head``), in ``--repeats`` alternating rounds
(medians):

- ``autograd_fps``: the autograd engine (its forward pass with a graph once per
  utterance, its strategy calibrated on a first run), extrapolated as above;
- ``autograd_dense_fps``: the same with the position-wise head not used (every frame's
  backward pass starts at the output, whole-layer windows everywhere): what skipping the
  zeros above the last attention block buys;
- ``reference_fps``, ``captum_fps`` (``LayerGradientXActivation`` over the same layers,
  one call per frame: a forward pass through the whole model, conv front end included,
  and a backward pass each) as above;
- ``speedup_vs_captum`` = ``autograd_fps / captum_fps``, ``speedup_vs_reference`` =
  ``autograd_fps / reference_fps``.

Prints one JSON line per config on stdout (timings breakdown and, with ``--profile``,
a torch.profiler table of one engine chunk and a cProfile of one utterance's collection
on one thread, on stderr)::

    .venv/bin/python benchmarks/engine.py
    .venv/bin/python benchmarks/engine.py --configs paper --workers 2 --profile
    .venv/bin/python benchmarks/engine.py --configs wav2vec2-4x256
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

PEAK_SIZE = 2048


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


def peak_gemm_rate(workers: int, seconds: float = 1.0) -> tuple[float, float]:
    """GFLOP/s of ``PEAK_SIZE`` x ``PEAK_SIZE`` float32 matrix products with the engine's
    threading: ``workers`` threads with one intra-op thread each, all at once, rates
    summed (0: one thread with torch's intra-op threads). Returns (wall-clock rate of all
    threads together, rate per CPU-second of one thread)."""
    n = PEAK_SIZE
    a, b = torch.randn(n, n), torch.randn(n, n)
    flop = 2.0 * n**3

    def run() -> tuple[float, float]:
        out = torch.empty(n, n)
        torch.matmul(a, b, out=out)  # warm-up
        reps, t0, c0 = 0, time.perf_counter(), time.thread_time()
        while time.perf_counter() - t0 < seconds or reps < 2:
            torch.matmul(a, b, out=out)
            reps += 1
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        return flop * reps / wall, flop * reps / max(cpu, 1e-9)

    if workers == 0:  # torch's intra-op threads: CPU time of the whole process
        c0 = time.process_time()
        t0 = time.perf_counter()
        wall, _ = run()
        cpu = wall * (time.perf_counter() - t0) / (time.process_time() - c0)
        return wall / 1e9, cpu / 1e9
    rates = [(0.0, 0.0)] * workers

    def work(w: int) -> None:
        torch.set_num_threads(1)  # per thread: new threads start with OpenMP's default
        rates[w] = run()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ts = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        torch.set_num_threads(threads)
    return sum(r[0] for r in rates) / 1e9, statistics.mean(r[1] for r in rates) / 1e9


def captum_fps(
    model, x: torch.Tensor, frames: int, tag: str, layers: list[str] | None = None
) -> float | None:
    """Frames/s of Captum's ``LayerGradientXActivation``, one call per target frame (see
    the module doc), from ``frames`` timed calls after a warm-up call; None without Captum.
    ``layers``: module names (default: the model's children named ``layer*``).

    Timed with torch's intra-op threads (what a user gets) and with one thread; the faster
    counts: many small operations on two OpenMP threads stall when other processes compete
    for the cores, and the peer should not be charged for that."""
    try:
        from captum.attr import LayerGradientXActivation
    except ImportError:
        log(f"{tag}: captum not installed, captum_fps = null")
        return None
    if layers is None:
        blocks = [m for name, m in model.named_children() if name.startswith("layer")]
    else:
        modules = dict(model.named_modules())
        blocks = [modules[name] for name in layers]

    def probs(inp: torch.Tensor) -> torch.Tensor:  # (B, F, T) -> (B, K, T')
        return torch.softmax(model(inp), dim=1)

    lgxa = LayerGradientXActivation(probs, blocks)
    xb = x[None]
    with torch.no_grad():
        classes = probs(xb)[0].argmax(0)  # (T',)
    frames = max(1, min(frames, classes.shape[0] - 1))
    threads = torch.get_num_threads()
    best = 0.0
    for n_threads in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(n_threads)
        try:
            lgxa.attribute(xb, target=(int(classes[0]), 0))  # warm-up
            t0 = time.perf_counter()
            for tau in range(1, frames + 1):
                attrs = lgxa.attribute(
                    xb, target=(int(classes[tau]), tau), attribute_to_layer_input=False
                )
            dt = time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
        assert len(attrs) == len(blocks)
        log(
            f"{tag}: {dt / frames:.3f} s per frame with {n_threads} intra-op thread(s) "
            f"({frames} timed, {len(blocks)} layers)"
        )
        best = max(best, frames / dt)
    return best


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


def collect_fps(
    model, utterances: int, workers: int | None, chunk: int, rounds: int, profile: bool = False
) -> tuple[float, float] | None:
    """End-to-end frames/s of the collection on a small flite corpus, and its fraction of
    the cone engine's frames/s on the same utterances (None without flite).

    Each round goes through the corpus once, alternating per utterance between the cone
    engine alone (forward and every frame's sensitivities, from features computed
    beforehand) and the collection of that utterance from its audio file (features, then
    :meth:`GradNAP.add <gradnap.method.collector.Collector.add>`: what
    :meth:`GradNAP.collect` does per utterance), so that the machine's load affects both
    alike; the fraction is the median of the per-round ratios. The same ratio of CPU
    times is logged per round. ``profile``: then the collection of the longest utterance
    on one thread (engine and collector) under cProfile, the library's functions by
    cumulative time (:func:`profile_collect`).
    """
    if shutil.which("flite") is None:
        log("collect: flite not found, collect_fps = null")
        return None
    from gradnap.corpus import read_corpus
    from gradnap.corpus.synth import synthesize_corpus
    from gradnap.engine import make_engine
    from gradnap.method.run import GradNAP

    with tempfile.TemporaryDirectory(prefix="gradnap-bench-") as tmp:
        root = Path(tmp) / "corpus"
        synthesize_corpus(root, utterances=utterances, seed=0, voices=["flite"], progress=False)
        corpus = read_corpus(root)
        feats = [corpus.features(u) for u in corpus.utterances]
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
        rates, ratios = [], []
        for r in range(rounds):
            nap.reset()
            wall = {"cone": 0.0, "collect": 0.0}
            cpu = dict(wall)
            frames = 0
            for utt, x in zip(corpus.utterances, feats, strict=True):
                t0, c0 = time.perf_counter(), time.process_time()
                frames += run_utterance(engine, x, chunk)[3]
                t1, c1 = time.perf_counter(), time.process_time()
                nap.add(utt, corpus.features(utt))
                t2, c2 = time.perf_counter(), time.process_time()
                wall["cone"] += t1 - t0
                wall["collect"] += t2 - t1
                cpu["cone"] += c1 - c0
                cpu["collect"] += c2 - c1
            examples = nap.progress.examples
            rates.append(examples / wall["collect"])
            ratios.append(wall["cone"] / wall["collect"] * examples / frames)
            log(
                f"collect round {r}: {nap.progress.utterances} utterances, {frames} frames; "
                f"cone {frames / wall['cone']:.1f} frames/s, collect {rates[-1]:.1f} "
                f"(fraction {ratios[-1]:.3f}; of CPU time {cpu['cone'] / cpu['collect']:.3f})"
            )
        if profile:
            longest = max(range(len(feats)), key=lambda i: feats[i].shape[1])
            profile_collect(model, layers, chunk, corpus, corpus.utterances[longest])
        return statistics.median(rates), statistics.median(ratios)


def profile_collect(model, layers, chunk: int, corpus, utt) -> None:
    """cProfile of the collection of one utterance on one thread (engine worker and
    collector thread), after a warm-up: the library's functions by cumulative time."""
    import cProfile
    import io
    import pstats

    from gradnap.engine import make_engine
    from gradnap.method.run import GradNAP
    from gradnap.threads import one_thread

    with one_thread():
        nap = GradNAP(
            model,
            layers,
            engine=make_engine(model, layers, workers=1),
            groupings=("grapheme", "phoneme"),
            examples="all",
            chunk_frames=chunk,
            threads=1,
        )
        nap.add(utt, corpus.features(utt))  # warm-up
        prof = cProfile.Profile()
        prof.enable()
        nap.add(utt, corpus.features(utt))
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(r"gradnap/(engine|method|features)", 24)
    log(out.getvalue())


#: Transformer configs: ``transformers`` config fields of a random wav2vec 2.0 CTC model.
TRANSFORMERS = {
    "wav2vec2-4x256": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        vocab_size=32,
        pad_token_id=0,
    ),
}
#: Its vocabulary: the layout of the published English wav2vec 2.0 CTC checkpoints.
TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]


def transformer_model(name: str):
    """A random ``Wav2Vec2ForCTC`` of config ``name`` as a gradnap model."""
    import transformers

    from gradnap.asr.hf import HFCTCModel, vocabulary_from_tokens
    from gradnap.defaults import FeatureConfig

    torch.manual_seed(0)
    hf = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**TRANSFORMERS[name])).eval()
    vocab = vocabulary_from_tokens({t: i for i, t in enumerate(TOKENS)}, len(TOKENS))
    return HFCTCModel(hf, vocab, FeatureConfig(input="waveform"))


def bench_transformer(name: str, args) -> dict:
    """The row of a transformer config (module doc)."""
    model = transformer_model(name)
    layers = default_layers(model)
    n = int(args.seconds * model.features.sample_rate)
    x = torch.randn(1, n, generator=torch.Generator().manual_seed(0))
    auto = AutogradEngine(model, layers, workers=args.workers)
    dense = AutogradEngine(model, layers, workers=args.workers)
    dense.pointwise_after = ()  # every backward pass from the output, whole layers
    ref = ReferenceEngine(model, layers)
    t_out = model.frontend.output_length(n)
    log(f"[{name}] {n} samples, {t_out} output frames, layers {layers}")
    for eng in (auto, dense):  # calibrates
        run_utterance(eng, x, args.autograd_frames, args.autograd_frames)
        choice = eng.calibration.choose(t_out) if eng.calibration else eng.strategy
        log(f"[{name}] autograd strategy: {choice}")
    rows: dict[str, list[float]] = {"auto": [], "dense": [], "ref": [], "captum": []}
    for r in range(args.repeats):
        rows["auto"].append(
            extrapolated_fps(auto, x, args.autograd_frames, t_out, f"[{name}] autograd")
        )
        rows["dense"].append(
            extrapolated_fps(
                dense, x, args.autograd_frames, t_out, f"[{name}] autograd, dense head"
            )
        )
        rows["ref"].append(
            extrapolated_fps(ref, x, args.reference_frames, t_out, f"[{name}] reference")
        )
        if not args.no_captum:
            cap = captum_fps(model, x, args.captum_frames, f"[{name}] captum", layers)
            if cap is not None:
                rows["captum"].append(cap)
        log(f"[{name}] round {r}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rows.items() if v))
    med = {k: statistics.median(v) if v else None for k, v in rows.items()}
    auto_fps, cap = med["auto"], med["captum"]
    assert auto_fps is not None and med["ref"] is not None and med["dense"] is not None
    return {
        "config": name,
        "autograd_fps": round(auto_fps, 2),
        "autograd_dense_fps": round(med["dense"], 2),
        "reference_fps": round(med["ref"], 2),
        "speedup_vs_reference": round(auto_fps / med["ref"], 2),
        "captum_fps": None if cap is None else round(cap, 3),
        "speedup_vs_captum": None if cap is None else round(auto_fps / cap, 1),
        "strategy": auto.calibration.choose(t_out) if auto.calibration else auto.strategy,
        "output_frames": t_out,
    }


def bench_config(name: str, args) -> dict:
    if name in TRANSFORMERS:
        return bench_transformer(name, args)
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
    cone_times, rates, ratios, cpu_ratios = [], [], [], []
    for r in range(args.repeats):
        rate, cpu_rate = peak_gemm_rate(workers, seconds=args.gemm_seconds)
        c0 = time.process_time()
        t_fwd, t_bwd, n, t_out = run_utterance(cone, x, args.chunk)
        cpu = time.process_time() - c0
        fps = t_out / (t_fwd + t_bwd)
        cone_times.append((t_fwd, t_bwd))
        rates.append(rate)
        ratios.append(fps / (rate * 1e9 / flops))
        cpu_ratios.append(flops * t_out / cpu / (cpu_rate * 1e9))
        log(
            f"[{name}] round {r}: peak GEMM {rate:.1f} GFLOP/s, cone {fps:.1f} frames/s "
            f"(forward {t_fwd:.2f} s, backward {t_bwd:.2f} s, {t_out} frames; "
            f"fraction {ratios[-1]:.3f}); per CPU-second: GEMM {cpu_rate:.1f} GFLOP, "
            f"cone {flops * t_out / cpu / 1e9:.1f} GFLOP (fraction {cpu_ratios[-1]:.3f}; "
            f"CPU {cpu:.1f} s, wall {t_fwd + t_bwd:.1f} s)"
        )
    cone_fps = statistics.median(t_out / (a + b) for a, b in cone_times)
    peak = statistics.median(rates)
    ceiling = peak * 1e9 / flops
    log(
        f"[{name}] ceiling fraction: {cone_fps / ceiling:.3f} (median of rounds "
        f"{statistics.median(ratios):.3f}; per CPU-second {statistics.median(cpu_ratios):.3f})"
    )
    if args.profile:
        profile_chunk(cone, x, args.chunk)
    cone.close()

    cap = None
    if not args.no_captum:
        cap = captum_fps(model, x, args.captum_frames, f"[{name}] captum")

    auto = AutogradEngine(model, layers, batch_frames=args.autograd_frames)
    run_utterance(auto, x, args.autograd_frames, args.autograd_frames)  # calibrates
    choice = auto.calibration.choose(t_out) if auto.calibration else auto.strategy
    autograd_fps = extrapolated_fps(auto, x, args.autograd_frames, t_out, f"[{name}] autograd")
    log(f"[{name}] autograd strategy: {choice}")

    ref = ReferenceEngine(model, layers)
    reference_fps = extrapolated_fps(ref, x, args.reference_frames, t_out, f"[{name}] reference")
    del auto, ref

    cfps = cfrac = None
    if not args.no_collect:
        measured = collect_fps(
            model, args.collect_utterances, args.workers, args.chunk, args.repeats, args.profile
        )
        if measured is not None:
            cfps, cfrac = measured
    return {
        "config": name,
        "cone_fps": round(cone_fps, 2),
        "autograd_fps": round(autograd_fps, 3),
        "reference_fps": round(reference_fps, 3),
        "speedup_vs_reference": round(cone_fps / reference_fps, 1),
        "captum_fps": None if cap is None else round(cap, 3),
        "speedup_vs_captum": None if cap is None else round(cone_fps / cap, 1),
        "peak_gflops": round(peak, 1),
        "ceiling_fps": round(ceiling, 1),
        "ceiling_fraction": round(cone_fps / ceiling, 3),
        "collect_fps": None if cfps is None else round(cfps, 2),
        "collect_fraction": None if cfrac is None else round(cfrac, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--configs",
        default="paper,default,wav2vec2-4x256",
        help=f"model configs (comma-separated; transformers: {', '.join(TRANSFORMERS)})",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="utterance length")
    p.add_argument("--chunk", type=int, default=METHOD.chunk_frames, help="frames per chunk")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="cone engine worker threads (default: one per intra-op thread; 0: none)",
    )
    p.add_argument("--repeats", type=int, default=5, help="alternating GEMM/engine rounds")
    p.add_argument("--gemm-seconds", type=float, default=1.0, help="peak GEMM timing per round")
    p.add_argument("--autograd-frames", type=int, default=16, help="frames timed (autograd)")
    p.add_argument("--reference-frames", type=int, default=8, help="frames timed (reference)")
    p.add_argument("--captum-frames", type=int, default=4, help="frames timed (Captum)")
    p.add_argument("--no-captum", action="store_true", help="skip the Captum measurement")
    p.add_argument("--collect-utterances", type=int, default=8, help="synthesized corpus size")
    p.add_argument("--no-collect", action="store_true", help="skip the collect measurement")
    p.add_argument(
        "--profile",
        action="store_true",
        help="torch.profiler table of one engine chunk; cProfile of one utterance's collection",
    )
    args = p.parse_args(argv)
    log(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    for name in args.configs.split(","):
        print(json.dumps(bench_config(name.strip(), args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
