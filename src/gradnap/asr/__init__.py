"""The demo's ASR model, a separate product from the GradNAP method.

- :mod:`~gradnap.asr.config` — model configs (``default``, ``paper``), without torch;
- :mod:`~gradnap.asr.model` — the Wav2Letter architecture;
- :mod:`~gradnap.asr.modelfile` — model files: save, load (also torchaudio layouts);
- :mod:`~gradnap.asr.data`, :mod:`~gradnap.asr.augment`, :mod:`~gradnap.asr.train` —
  CTC training with cached features and SpecAugment-style masking;
- :mod:`~gradnap.asr.decode`, :mod:`~gradnap.asr.evaluate` — greedy and beam-search
  decoding, CER and WER.

Nothing is imported here, so that ``gradnap.asr.config`` stays free of torch.
"""
