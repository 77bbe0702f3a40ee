"""Corpora: synthesis (flite, eSpeak NG), LibriSpeech-format reading, phone timings, forced alignment."""

from gradnap.corpus.librispeech import Corpus, Utterance, read_corpus
from gradnap.corpus.timings import PhoneSpan, read_timings, write_timings

__all__ = ["Corpus", "PhoneSpan", "Utterance", "read_corpus", "read_timings", "write_timings"]
