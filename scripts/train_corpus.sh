# Sourced by scripts/train_default.sh and scripts/train_transformer.sh (from the repository
# root): the training corpus both models are trained on, and the `gradnap` command.
#
# Environment overrides: GRADNAP_CACHE (cache root, default ~/.cache/gradnap), PYTHON
# (default .venv/bin/python).

PYTHON=${PYTHON:-.venv/bin/python}
CACHE=${GRADNAP_CACHE:-$HOME/.cache/gradnap}
CORPUS=$CACHE/corpora/train16k
HOLDOUT_VOICE=awb
gradnap() { "$PYTHON" -m gradnap "$@"; }

# Corpus: 16,000 utterances (17 h), 15 voices (flite + eSpeak NG), seed 1.
if ! grep -q '"complete": true' "$CORPUS/corpus.json" 2>/dev/null; then
    gradnap corpus synth --out "$CORPUS" --utterances 16000 --seed 1
fi
