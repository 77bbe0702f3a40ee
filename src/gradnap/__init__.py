"""gradnap: Gradient-adjusted Neuron Activation Profiles for speech recognition models.

Krug & Stober, arXiv 2002.08125. See the README for the command line and the Python API.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .analysis import (
    ClusterCut,
    LayerClustering,
    OptimalInput,
    RandomLabelGrouping,
    SilhouetteTable,
    cluster_layers,
    cluster_profiles,
    optimal_input,
    optimal_input_for_profile,
    random_label_grouping,
    responsiveness,
    silhouette,
    silhouette_table,
    top_neurons,
)
from .audio import (
    class_label,
    decode_indices,
    encode_text,
    frame_to_seconds,
    load_audio,
    log_mel,
    mel_frequencies,
    normalize_text,
    num_frames,
    seconds_to_frame,
)
from .checkpoint import load_model, save_checkpoint
from .collect import GradNAP
from .corpus.align import Aligner, align_corpus
from .corpus.librispeech import Corpus, Utterance, read_corpus
from .corpus.stats import corpus_stats
from .corpus.synth import synthesize_corpus
from .corpus.timings import PhoneSpan, read_timings, write_timings
from .decode import BeamDecoder, greedy_decode
from .defaults import ALPHABET, BLANK_INDEX, FEATURES, NUM_CLASSES, PHONE_SET, FeatureConfig
from .engine import (
    AutogradEngine,
    ConeEngine,
    ReferenceEngine,
    default_layers,
    make_engine,
)
from .errors import GradnapError
from .evaluate import evaluate_model, transcribe
from .geometry import ConvSpec, Geometry
from .model import CONFIGS, ModelConfig, Wav2Letter, build_model, output_frame_seconds
from .plots import (
    plot_action_potentials,
    plot_dendrogram,
    plot_input_gradnap,
    plot_input_gradnaps,
    plot_naps,
    plot_silhouettes,
    save_figure,
)
from .results import Axes, Result, merge_results

__all__ = [
    "__version__",
    "ALPHABET",
    "BLANK_INDEX",
    "CONFIGS",
    "ConvSpec",
    "FEATURES",
    "FeatureConfig",
    "Geometry",
    "GradnapError",
    "ModelConfig",
    "NUM_CLASSES",
    "PHONE_SET",
    "Wav2Letter",
    "build_model",
    "class_label",
    "decode_indices",
    "encode_text",
    "frame_to_seconds",
    "load_audio",
    "log_mel",
    "mel_frequencies",
    "normalize_text",
    "num_frames",
    "seconds_to_frame",
    "ClusterCut",
    "LayerClustering",
    "OptimalInput",
    "RandomLabelGrouping",
    "SilhouetteTable",
    "cluster_layers",
    "cluster_profiles",
    "optimal_input",
    "optimal_input_for_profile",
    "random_label_grouping",
    "responsiveness",
    "silhouette",
    "silhouette_table",
    "top_neurons",
    "plot_action_potentials",
    "plot_dendrogram",
    "plot_input_gradnap",
    "plot_input_gradnaps",
    "plot_naps",
    "plot_silhouettes",
    "save_figure",
    "BeamDecoder",
    "evaluate_model",
    "greedy_decode",
    "load_model",
    "output_frame_seconds",
    "save_checkpoint",
    "transcribe",
    "corpus_stats",
    "synthesize_corpus",
    "Axes",
    "GradNAP",
    "Result",
    "merge_results",
    "Aligner",
    "Corpus",
    "PhoneSpan",
    "Utterance",
    "align_corpus",
    "read_corpus",
    "read_timings",
    "write_timings",
    "AutogradEngine",
    "ConeEngine",
    "ReferenceEngine",
    "default_layers",
    "make_engine",
]
