"""The GradNAP method (docs/method.md §1): from a model's per-frame sensitivities to
profiles per group.

Data flows through the modules in this order:

- :mod:`~gradnap.method.examples` — which output frames are examples;
- :mod:`~gradnap.method.groupings` — a label per example (grapheme, phoneme, speaker,
  any function, seeded random labels for the chance level);
- :mod:`~gradnap.method.windows` — the alignment centre ``t*`` and the windows around it;
- :mod:`~gradnap.method.spectrum` — a waveform input's aligned windows as short-time
  power spectra (one more layer, in Hz and ms);
- :mod:`~gradnap.method.accumulators` — sums and counts per group, with one array codec;
- :mod:`~gradnap.method.metadata` — the run's metadata (one frozen dataclass, one codec,
  one compatibility rule for resume and merge);
- :mod:`~gradnap.method.profiles` — the profile formulas on the sums;
- :mod:`~gradnap.method.result` — the result file, its profiles, merging;
- :mod:`~gradnap.method.compare` — the largest differences of two results, by label;
- :mod:`~gradnap.method.collector` — :class:`GradNAP`: one utterance at a time;
- :mod:`~gradnap.method.run` — a whole corpus: shards, checkpoints, resume, distributed.
"""

from gradnap.method.groupings import make_groupings, random_label_grouping
from gradnap.method.result import Axes, Result, merge_results
from gradnap.method.run import GradNAP

__all__ = ["Axes", "GradNAP", "Result", "make_groupings", "merge_results", "random_label_grouping"]
