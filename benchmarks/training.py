"""Training and decoding throughput of the Wav2Letter configs, as ratios in one process.

    .venv/bin/python benchmarks/training.py [--config default] [--batch 12] [--frames 400]

Reference: a plain forward + backward of the model on the same batch (the floor for any
training step). Measured: one full training step (padded forward with per-utterance
masking, log-softmax, CTC loss, backward, gradient clipping, Adam), reported as
utterances/s and as a ratio to the reference; and greedy vs. beam decoding of the
resulting log-probabilities (output frames/s).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gradnap.asr.data import Batch, collate
from gradnap.asr.decode import BeamDecoder, greedy_decode_batch
from gradnap.asr.model import build_model
from gradnap.defaults import BLANK_INDEX


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="default")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--frames", type=int, default=400, help="input frames per utterance")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.config, seed=0)
    from gradnap.asr.data import Example
    from gradnap.corpus.librispeech import Utterance

    exs = []
    for i in range(args.batch):
        t = args.frames - 7 * i  # slightly different lengths, as in a bucketed batch
        targets = torch.randint(0, 28, (t // 8,))
        exs.append(Example(Utterance(str(i), None, "", "s", "1"), torch.randn(128, t), targets))
    batch: Batch = collate(exs, model.geometry)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ctc = torch.nn.CTCLoss(blank=BLANK_INDEX, zero_infinity=True)

    def reference() -> None:
        model.zero_grad(set_to_none=True)
        model(batch.features).sum().backward()

    def train_step() -> None:
        logits, _ = model.forward_padded(batch.features, batch.input_lengths)
        lp = torch.log_softmax(logits, dim=1).permute(2, 0, 1)
        loss = ctc(lp, batch.targets, batch.output_lengths, batch.target_lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    t_ref = _time(reference, args.repeat)
    t_step = _time(train_step, args.repeat)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"config {args.config} ({n_params} parameters), batch {args.batch} x {args.frames} frames, {args.threads} threads"
    )
    print(f"reference forward+backward: {t_ref:.3f} s  ({args.batch / t_ref:.1f} utt/s)")
    print(
        f"training step:              {t_step:.3f} s  ({args.batch / t_step:.1f} utt/s), ratio {t_step / t_ref:.2f}"
    )

    with torch.no_grad():
        logits, out_lens = model.forward_padded(batch.features, batch.input_lengths)
        lp = torch.log_softmax(logits, dim=1)
    frames = int(out_lens.sum())
    beam = BeamDecoder(beam_size=32)
    t_greedy = _time(lambda: greedy_decode_batch(logits, out_lens), args.repeat)
    t_beam = _time(lambda: beam.decode_batch(lp, out_lens), args.repeat)
    print(
        f"greedy decoding: {frames / t_greedy:.0f} frames/s; beam 32: {frames / t_beam:.0f} frames/s, ratio {t_beam / t_greedy:.1f}"
    )


if __name__ == "__main__":
    main()
