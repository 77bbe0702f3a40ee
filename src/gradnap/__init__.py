"""gradnap: Gradient-adjusted Neuron Activation Profiles for speech recognition models.

Krug & Stober, arXiv 2002.08125; the method as this package implements it is written down
in ``docs/method.md``. The top level holds the Captum-like core; everything else lives in
subpackages, one per concern, each importing only from those listed before it:

====================  ==========================================================
``gradnap.features``  audio files to log-mel features (with ``alphabet``, ``geometry``)
``gradnap.corpus``    corpora: LibriSpeech-format reading, synthesis, phone timings
``gradnap.asr``       the Wav2Letter ASR model: files, training, decoding, evaluation
``gradnap.engine``    per-frame sensitivities of any model (cone and autograd engines)
``gradnap.method``    examples, windows at ``t*``, groupings, accumulators, collection,
                      the result file and its profiles
``gradnap.analysis``  responsiveness, optimal inputs, clustering and silhouettes
``gradnap.figures``   the paper's figures (drawing only)
``gradnap.report``    the HTML report and ``gradnap demo``
``gradnap.cli``       the ``gradnap`` command
====================  ==========================================================

>>> import gradnap
>>> sorted(gradnap.__all__)[:3]
['GradNAP', 'GradnapError', 'Result']

Names are imported on first use, so ``import gradnap`` is cheap (no torch, matplotlib or
corpus backend until needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradnap._lazy import lazy_names
from gradnap._version import __version__
from gradnap.errors import GradnapError

if TYPE_CHECKING:  # pragma: no cover
    from gradnap.asr.modelfile import load_model
    from gradnap.corpus.librispeech import read_corpus
    from gradnap.engine import default_layers, layer_names, make_engine
    from gradnap.method.result import Result, merge_results
    from gradnap.method.run import GradNAP

__all__ = [
    "GradNAP",
    "GradnapError",
    "Result",
    "__version__",
    "default_layers",
    "layer_names",
    "load_model",
    "make_engine",
    "merge_results",
    "read_corpus",
]

_LAZY = {
    "GradNAP": "gradnap.method.run",
    "Result": "gradnap.method.result",
    "merge_results": "gradnap.method.result",
    "load_model": "gradnap.asr.modelfile",
    "read_corpus": "gradnap.corpus.librispeech",
    "make_engine": "gradnap.engine",
    "layer_names": "gradnap.engine",
    "default_layers": "gradnap.engine",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())
