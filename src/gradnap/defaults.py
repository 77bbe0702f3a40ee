"""Defaults in one place: feature settings, alphabet, method options.

Every module takes its defaults from here; configs are frozen dataclasses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Directory that ships data inside the package (the default checkpoint, model card).
PACKAGE_DATA = Path(__file__).parent / "data"

#: Where generated corpora, training runs and demo reports go unless told otherwise:
#: ``$GRADNAP_CACHE``, else ``~/.cache/gradnap``.
CACHE_DIR = Path(os.environ.get("GRADNAP_CACHE", Path.home() / ".cache" / "gradnap"))


@dataclass(frozen=True)
class FeatureConfig:
    """Audio front end of the paper's model (docs/method.md §2).

    Frame ``i`` is the STFT window centred on sample ``i * hop_length`` (``center=True``),
    so it covers time ``i * hop_length / sample_rate`` seconds; an utterance of ``n``
    samples has ``1 + n // hop_length`` frames.

    ``input="waveform"`` (models that take the waveform, such as Hugging Face wav2vec 2.0
    models): the model input is the ``(1, n)`` waveform itself, one "frame" per sample;
    ``normalize="utterance"`` then scales it to zero mean and unit variance as Hugging
    Face's ``Wav2Vec2FeatureExtractor`` does (``do_normalize``); the STFT and mel fields
    are unused.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    n_mels: int = 128
    #: Added to the mel power before the log.
    log_offset: float = 1e-6
    #: z-normalisation: a single mean and standard deviation over all bins and frames
    #: of one utterance (keeps the spectral shape, e.g. formants, visible).
    normalize: str = "utterance"
    #: The model input: ``"log_mel"`` (default) or ``"waveform"`` (see above).
    input: str = "log_mel"

    @property
    def frame_seconds(self) -> float:
        """Seconds per input frame (8 ms; one sample for waveform input)."""
        if self.input == "waveform":
            return 1.0 / self.sample_rate
        return self.hop_length / self.sample_rate


FEATURES = FeatureConfig()

#: Graphemes: index 0..25 = a..z, 26 = space, 27 = apostrophe, 28 = CTC blank.
ALPHABET: tuple[str, ...] = tuple("abcdefghijklmnopqrstuvwxyz") + (" ", "'")
BLANK_SYMBOL = "<b>"
BLANK_INDEX = len(ALPHABET)  # 28
NUM_CLASSES = len(ALPHABET) + 1  # 29

#: 39 ARPAbet phonemes without stress, plus silence.
PHONEMES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
    "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T",
    "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
SILENCE = "SIL"
PHONE_SET: tuple[str, ...] = PHONEMES + (SILENCE,)

#: Reading corpora (:mod:`gradnap.corpus.librispeech`, docs/alignment.md): audio whose
#: peak is below this level (3 steps of 16-bit audio) is digital silence and skipped.
SILENT_PEAK_DBFS = -80.0
#: Seconds by which an utterance's phone timings may end before or after its audio.
TIMINGS_END_TOLERANCE = 0.02


@dataclass(frozen=True)
class MethodConfig:
    """Options of the GradNAP method (docs/method.md §1)."""

    #: Which output frames are examples: "nonblank" (default), "all", "first".
    examples: str = "nonblank"
    #: Differentiated quantity: "prob" (softmax, as in the paper), "logprob", "logit".
    target: str = "prob"
    #: Groups with fewer examples are left out and reported.
    min_count: int = 20
    #: Target frames per engine chunk.
    chunk_frames: int = 128
    #: When a phoneme label is read (docs/method.md §1.5): where the model listens, from
    #: the input layer's alignment ("median", "peak", "centroid", "mass"), or at the
    #: receptive-field centre of the output frame ("centre", "centre+68" = 68 ms later).
    #: "median" was the most consistent with the predicted letter of the definitions
    #: that need no calibration (docs/analyses.md, "Phone label time").
    label_time: str = "median"
    #: Folds of the per-fold sums (docs/method.md §6); 1 keeps totals only. K >= 4 enables
    #: the cross-validated analyses with an uncertainty (gradnap.analysis.crossval).
    folds: int = 5
    #: What the fold hash is taken of: "utterance" (id) or "speaker".
    fold_key: str = "utterance"
    #: Per-fold sums (docs/method.md §6, docs/results.md "Size"): the central fraction
    #: fold_span of each layer's window, centred on t*, at full resolution, so that the
    #: cross-validated score measures the profiles the figures show (time bins measure
    #: smoothed ones and change its conclusions: docs/analyses.md, "Per-fold
    #: resolution") ...
    fold_span: float = 0.2
    #: ... and the columns outside it pooled into bins of ceil(W / fold_bins) columns
    #: centred on t*; 0 keeps none of them (on the demo they barely move the score, and
    #: dropping them keeps its result file below 100 MB).
    fold_bins: int = 0
    #: Window of layers without a finite receptive field (attention models, whose output
    #: frames depend on the whole utterance): the positions of this many seconds of the
    #: front end's output frames around t* (docs/method.md §1.3); layers above the last
    #: attention block, where a frame's sensitivity lives at that frame alone, get one
    #: position.
    attention_window_seconds: float = 0.5


METHOD = MethodConfig()


@dataclass(frozen=True)
class SpectrumConfig:
    """The input spectrum of waveform models (docs/method.md §1.10): short-time power
    spectra of each example's aligned input window, in Hz and ms."""

    #: Length of one analysis frame (Hann window), ms: 25 ms = 400 samples at 16 kHz, a
    #: frequency bin every 40 Hz.
    frame_ms: float = 25.0
    #: Frame hop, ms (frames are centred on t* and every hop around it).
    hop_ms: float = 10.0
    #: Floor of the input's log power, dB re unit power of the model input (the
    #: normalised waveform has unit variance): about the noise floor of 16-bit audio at
    #: speech level, so that digital silence does not dominate the mean.
    floor_db: float = -80.0


SPECTRUM = SpectrumConfig()

#: Definitions of the time at which a phoneme label is read (docs/method.md §1.5).
#: Also accepted: "centre+MS" / "centre-MS", the centre shifted by a fixed offset in ms.
LABEL_TIMES: tuple[str, ...] = ("median", "peak", "centroid", "mass", "centre")

#: Strategies of the autograd engine (``gradnap.engine.AutogradEngine``): ``auto`` times
#: the others on the first utterance of each length and keeps the fastest.
AUTOGRAD_STRATEGIES: tuple[str, ...] = ("auto", "batch", "per_frame", "vjp")


@dataclass(frozen=True)
class OptimalInputConfig:
    """Optimal-input search for the most responsive neurons (docs/method.md §1.7)."""

    init_std: float = 0.001
    lr: float = 0.05
    steps: int = 16
    l1: float = 15.0  # divided by the layer's receptive field
    l2: float = 0.1  # divided by the layer's receptive field
    top_k: int = 5


OPTIMAL_INPUT = OptimalInputConfig()

#: Dendrogram cut percentiles of the pairwise distances (docs/method.md §1.8).
CLUSTER_PERCENTILES: tuple[float, ...] = (75.0, 80.0, 85.0, 90.0, 95.0)

#: Where the masks of the cross-validated GradNAP distances come from (docs/method.md §6,
#: ``gradnap.analysis.crossval.MASKS``): one mask per pair of groups, the mean of theirs,
#: from two further folds.
CROSSVAL_MASK = "pair"


@dataclass(frozen=True)
class AlignmentConfig:
    """Forced alignment with pocketsphinx (:mod:`gradnap.corpus.forced_alignment`, docs/method.md §2)."""

    #: Silence added before and after the audio so the aligner can place SIL there.
    pad_seconds: float = 0.3
    #: Shift pocketsphinx's frame boundaries to the centres of its analysis windows:
    #: frame ``t`` spans samples ``[t * shift, t * shift + wlen)``, so the boundary between
    #: frames ``t - 1`` and ``t`` lies at ``t * shift + wlen / 2 - shift / 2`` (7.8 ms).
    window_centre: bool = True
    #: pocketsphinx acoustic model directory and dictionary; ``None``: the en-us model
    #: and CMU dictionary shipped with the pocketsphinx wheel.
    acoustic_model: str | None = None
    dictionary: str | None = None
    #: Attempts per utterance: the standard deviation (16-bit units; 10 = -70 dBFS) of
    #: seeded Gaussian noise added to the padded audio, tried in turn until one aligns.
    #: Digital silence (synthesized speech, the padding) makes some alignments fail and a
    #: little noise others; measured on synthesized speech, (0, 10, 30) fails least.
    dither: tuple[float, ...] = (0.0, 10.0, 30.0)
    #: Quality (docs/alignment.md, "Alignment quality"): an alignment that places more
    #: than this share of the utterance's speech frames in SIL is rejected (the
    #: transcript misses words that are spoken). ``None`` keeps every alignment.
    max_silence_share: float | None = 0.3
    #: An alignment whose phonemes' mean acoustic score per frame (pocketsphinx's log
    #: units; 0 = the best-scoring senone in every frame) is below this is kept with a
    #: warning (wrong words score low, but so do accents the model knows badly).
    #: ``None``: no warning.
    warn_phone_score: float | None = -55.0
    #: Speech frames (10 ms) for the silence share: louder than the loudest frame minus
    #: ``speech_range_db`` and than the quietest tenth of the frames plus ``speech_floor_db``.
    speech_range_db: float = 40.0
    speech_floor_db: float = 15.0


ALIGNMENT = AlignmentConfig()


@dataclass(frozen=True)
class TrainConfig:
    """Training defaults for ``gradnap train`` (CTC, Adam; see :mod:`gradnap.asr.train`)."""

    epochs: int = 20
    #: Peak learning rate of Adam (reached after ``warmup_steps``, then cosine decay to
    #: ``final_lr_fraction * lr``).
    lr: float = 1e-3
    warmup_steps: int = 300
    final_lr_fraction: float = 0.05
    #: Padded input frames per batch (batch size x longest utterance).
    max_frames: int = 12000
    max_batch: int = 32
    #: Gradient-norm clipping (0 disables).
    grad_clip: float = 10.0
    #: Fraction of the sentences held out (half validation, half test).
    heldout_fraction: float = 0.05
    seed: int = 0
    #: SpecAugment-style masking (:mod:`gradnap.asr.augment`); 0 masks turns it off.
    #: Per utterance: ``freq_masks`` bands of up to ``freq_mask_width`` mel bins and
    #: ``time_masks`` spans of up to ``time_mask_width`` frames (and at most
    #: ``time_mask_fraction`` of the utterance) are set to 0.
    freq_masks: int = 2
    freq_mask_width: int = 16
    time_masks: int = 2
    time_mask_width: int = 20
    time_mask_fraction: float = 0.1


TRAIN = TrainConfig()


@dataclass(frozen=True)
class TransformerConfig:
    """A small wav2vec 2.0 CTC model trained by ``scripts/train_transformer.py`` (a ``transformers``
    ``Wav2Vec2Config``; :mod:`gradnap.asr.train_hf`). Pre-LN encoder
    (``do_stable_layer_norm``), layer-normalised conv front end, no dropout; the front
    end's strides multiply to 320 samples (one output frame per 20 ms at 16 kHz)."""

    conv_dim: tuple[int, ...] = (64, 128, 256)
    conv_kernel: tuple[int, ...] = (64, 8, 5)
    conv_stride: tuple[int, ...] = (16, 4, 5)
    hidden_size: int = 192
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 768
    #: Positional convolution over encoder frames (kernel, groups).
    num_conv_pos_embeddings: int = 32
    num_conv_pos_embedding_groups: int = 16
    #: Time masking of the front end's output while training (``transformers``' own
    #: SpecAugment: about this fraction of the frames, in spans of ``mask_time_length``).
    mask_time_prob: float = 0.05
    mask_time_length: int = 5


TRANSFORMER = TransformerConfig()


@dataclass(frozen=True)
class TransformerTrainConfig:
    """Training of the :class:`TransformerConfig` model (:mod:`gradnap.asr.train_hf`): AdamW with a
    linear warm-up and a cosine decay over ``max_steps``, CTC loss (blank = pad token)."""

    max_steps: int = 4000
    lr: float = 1e-3
    warmup_steps: int = 400
    final_lr_fraction: float = 0.05
    weight_decay: float = 0.01
    #: Padded input samples per batch (batch size x longest utterance): 40 s of audio.
    max_samples: int = 640_000
    max_batch: int = 32
    grad_clip: float = 5.0
    heldout_fraction: float = 0.05
    seed: int = 0
    #: Greedy CER of the validation split every this many steps (and at the end).
    valid_every: int = 500
    #: Run state written at least this often (and on SIGINT / SIGTERM).
    checkpoint_minutes: float = 5.0


TRANSFORMER_TRAIN = TransformerTrainConfig()


@dataclass(frozen=True)
class SynthConfig:
    """The synthesized English corpus (``gradnap corpus synth``, docs/corpus.md)."""

    #: Candidate words: this many most frequent English words of ``wordfreq``.
    vocabulary_size: int = 5000
    #: P(word) proportional to its frequency to this power (1 = as in text, 0 = uniform).
    word_weight_exponent: float = 0.5
    min_words: int = 3
    max_words: int = 15
    #: Utterances per chapter directory (the unit that is written atomically and resumed).
    chapter_size: int = 50
    flite_voices: tuple[str, ...] = ("slt", "rms", "awb", "kal16")
    espeak_voices: tuple[str, ...] = (
        "en-us", "en-us+f2", "en-us-nyc+m3", "en+m7", "en-gb-x-rp+f3", "en-gb-scotland+m4",
        "en-029+f4", "en-gb-x-gbclan+m2", "en-gb-x-gbcwmd+f1", "en-us+klatt", "en+klatt4",
    )  # fmt: skip
    #: flite: duration stretch (1 = the voice's own rate; larger = slower).
    flite_stretch: tuple[float, float] = (0.85, 1.2)
    #: flite: factor on the voice's mean F0 (rms has no F0 control: speed perturbation).
    flite_pitch: tuple[float, float] = (0.85, 1.2)
    #: eSpeak: rate in words per minute, base pitch and pitch range (0-100).
    espeak_rate: tuple[int, int] = (140, 200)
    espeak_pitch: tuple[int, int] = (30, 70)
    espeak_range: tuple[int, int] = (30, 80)


SYNTH = SynthConfig()


@dataclass(frozen=True)
class CollectConfig:
    """Options of a collection run (``gradnap collect``, :meth:`gradnap.GradNAP.collect`)."""

    #: Groupings collected when none are named.
    groupings: str = "grapheme"
    #: Checkpoint every this many utterances or seconds, whichever comes first.
    checkpoint_every: int = 200
    checkpoint_seconds: float = 300.0
    #: Problem messages (skipped utterances) kept in a result file; all are counted.
    max_problems: int = 1000
    #: ``gradnap compare``: largest relative difference of two results taken as equal.
    compare_tol: float = 1e-3


COLLECT = CollectConfig()


@dataclass(frozen=True)
class ReportConfig:
    """What the paper report (``gradnap report``, ``gradnap demo``) shows."""

    #: Phonemes whose input-layer GradNAPs are shown (the paper's Fig. 2).
    input_groups: tuple[str, ...] = ("AA", "AE", "IY", "UW", "T")
    input_grouping: str = "phoneme"
    #: Groups and layer of the action-potential plots (the paper's Fig. 3); layer ``None``
    #: = "layer2" when the model has it, else the second layer after the input.
    action_groups: tuple[str, ...] = ("AE", "T")
    action_grouping: str = "phoneme"
    action_layer: str | None = None
    #: Dendrogram: layer ``None`` = the last hidden layer (the one below the output layer);
    #: grouping; percentile cut.
    dendrogram_layer: str | None = None
    #: NAP baseline heatmaps: layer ``None`` = the action-potential layer.
    nap_layer: str | None = None
    dendrogram_grouping: str = "phoneme"
    dendrogram_percentile: float = 85.0
    #: Groupings compared by silhouette, each with its chance level ``chance_<grouping>``.
    cluster_groupings: tuple[str, ...] = ("grapheme", "phoneme")
    #: Cross-validated cluster score (docs/method.md §6): error bars of ± this many
    #: jackknife standard errors; a score (or difference) beyond them counts as clear.
    score_sigmas: float = 2.0


REPORT = ReportConfig()


@dataclass(frozen=True)
class DemoConfig:
    """``gradnap demo``: the analysis corpus and the model."""

    #: Utterances of the analysis corpus (synthesized; sentences differ from training's).
    utterances: int = 400
    #: ... for an attention model (a Hugging Face checkpoint, gradnap's ``transformer``):
    #: its engine runs one backward pass per output frame (no cone), so the demo analyses
    #: fewer utterances.
    attention_utterances: int = 80
    #: Seed of the analysis corpus; the shipped model was trained on seed 1.
    seed: int = 1000
    model: str = "default"
    #: Seed of the random-label (chance level) groupings.
    chance_seed: int = 0
    #: Groups with fewer examples are left out (docs/method.md §1.5).
    min_count: int = METHOD.min_count
    #: Folds of the per-fold sums (docs/method.md §6): the report's cross-validated
    #: cluster score needs at least 4; 1 keeps totals only (and the report without it).
    folds: int = METHOD.folds


DEMO = DemoConfig()
