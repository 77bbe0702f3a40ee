"""``gradnap demo``: the whole paper on the embedded default, from nothing to a report.

1. Synthesize (or reuse) an analysis corpus under the cache directory: the seed differs
   from the training corpus's, so its sentences were not in training.
2. Load the shipped default model.
3. Collect GradNAPs for graphemes, phonemes and their chance levels (random labels with
   the same label frequencies) in every layer, in one pass, in ``config.folds`` folds.
4. Run every analysis and write the report directory: ``index.html``, the result file
   ``result.npz``, one PNG per figure, ``silhouettes.json`` and, with at least 4 folds
   (the default 5), ``cluster_scores.json`` (docs/method.md §6).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gradnap.alphabet import class_label, encode_text
from gradnap.defaults import CACHE_DIR, DEMO, REPORT, DemoConfig, ReportConfig
from gradnap.errors import GradnapError
from gradnap.fileio import check_writable

__all__ = ["chance_groupings", "demo_utterances", "run_demo", "DemoResult"]

log = logging.getLogger(__name__)


def chance_groupings(corpus, groupings=("grapheme", "phoneme"), seed: int = 0) -> list:
    """Random-label groupings ``chance_<grouping>`` for the chance level of the clustering.

    Each example gets a label drawn, seeded, with the label frequencies of the corpus:
    graphemes by their count in the transcripts (space as ``_``), phonemes by their total
    duration in the phone timings (examples are frames, so longer phones have more).
    """
    from gradnap.method.groupings import random_label_grouping

    out = []
    if "grapheme" in groupings:
        letters: Counter[str] = Counter()
        for utt in corpus:
            letters.update(class_label(i) for i in encode_text(utt.text))
        if letters:
            out.append(random_label_grouping(dict(letters), seed=seed, name="chance_grapheme"))
    if "phoneme" in groupings:
        durations: Counter[str] = Counter()
        for utt in corpus:
            for span in utt.phones or ():
                durations[span.phone] += span.end - span.start
        if durations:
            out.append(random_label_grouping(dict(durations), seed=seed, name="chance_phoneme"))
    return out


def demo_utterances(model: str | Path, config: DemoConfig = DEMO) -> int:
    """The default analysis corpus size for ``model`` (a name or path):
    ``config.attention_utterances`` for an attention model (a Hugging Face checkpoint
    directory, a :class:`~gradnap.asr.transformer.ConvTransformer` checkpoint), else
    ``config.utterances``."""
    from gradnap.asr.modelfile import has_attention

    return config.attention_utterances if has_attention(model) else config.utterances


@dataclass
class DemoResult:
    """Where the report is and how long each step took (seconds)."""

    index: Path
    result_file: Path
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in self.timings.items())
        return f"report: {self.index}\nresult file: {self.result_file}\ntime: {steps}"


def run_demo(
    out: str | Path | None = None,
    *,
    config: DemoConfig = DEMO,
    report_config: ReportConfig = REPORT,
    corpus_dir: str | Path | None = None,
    model=None,
    jobs: int | None = None,
    progress: bool = True,
) -> DemoResult:
    """Run the demo; ``out`` defaults to ``<cache>/demo``. ``model``: a model object or a
    checkpoint name/path (default ``config.model``). ``corpus_dir``: the analysis corpus
    (default: synthesized under the cache directory)."""
    from gradnap.asr.modelfile import load_model
    from gradnap.corpus import read_corpus
    from gradnap.corpus.synth import synthesize_corpus
    from gradnap.engine import INPUT_LAYER, default_layers
    from gradnap.method.run import GradNAP
    from gradnap.report.paper import build_report

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    out_dir = Path(out) if out is not None else CACHE_DIR / "demo"
    check_writable(out_dir, "--out", directory=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    if corpus_dir is None:
        corpus_dir = CACHE_DIR / "corpora" / f"demo-s{config.seed}-n{config.utterances}"
    log.info(
        "analysis corpus: %s (%d utterances, seed %d)", corpus_dir, config.utterances, config.seed
    )
    synthesize_corpus(corpus_dir, config.utterances, config.seed, jobs=jobs, progress=progress)
    timings["corpus"] = time.perf_counter() - t0

    t = time.perf_counter()
    source = model if model is not None else config.model
    model = load_model(source) if isinstance(source, str | Path) else source
    corpus = read_corpus(corpus_dir)
    log.info("collecting GradNAPs of %d utterances with model %s", len(corpus), source)
    groups = ["grapheme", "phoneme", *chance_groupings(corpus, seed=config.chance_seed)]
    # the input layer too (a Hugging Face model's defaults leave it out): the report's
    # input figures, and the alignment that phoneme labels are read at
    layers = default_layers(model)
    if INPUT_LAYER not in layers:
        layers = [INPUT_LAYER, *layers]
    nap = GradNAP(
        model, layers=layers, groupings=groups, min_count=config.min_count, folds=config.folds
    )
    nap.model_source = str(source) if isinstance(source, str | Path) else None
    checkpoint = out_dir / "result.partial.npz"
    result = nap.collect(
        corpus, progress=progress, checkpoint=checkpoint, resume=checkpoint.is_file()
    )
    if result.meta.progress.examples == 0:
        raise GradnapError(
            f"model {source}: no examples in {len(corpus)} utterances of {corpus_dir} (the "
            f"examples are the frames where the model predicts a letter, "
            f"examples={nap.examples!r}): the model predicts blank everywhere; is it trained?"
        )
    result_file = result.save(out_dir / "result.npz")
    (out_dir / "result.partial.npz").unlink(missing_ok=True)
    timings["collect"] = time.perf_counter() - t

    t = time.perf_counter()
    log.info("writing the report to %s", out_dir)
    index = build_report(
        result,
        out_dir,
        model=model,  # optimal inputs: spectrogram models only (the report says why)
        config=report_config,
        title=f"GradNAP demo: the {_model_name(source)} model on a synthesized corpus",
        notes=[
            f"Analysis corpus: {len(corpus)} synthesized utterances (seed {config.seed}), "
            f"{len(corpus.speakers())} voices; model: {source}.",
        ],
    )
    timings["report"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return DemoResult(index, Path(result_file), timings)


def _model_name(source) -> str:
    """How the report's title names the model: a shipped model's name, else "given"."""
    from gradnap.asr.modelfile import SHIPPED_MODELS

    return f"embedded {source}" if str(source) in SHIPPED_MODELS else "given"
