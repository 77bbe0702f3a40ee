#!/usr/bin/env bash
# Reproduce the shipped default checkpoint (src/gradnap/data/default.pt) in one command:
# synthesize the corpus, train the `default` config, evaluate, copy the checkpoint.
#
#   ./scripts/train_default.sh            # ~2.5 h on 2 idle CPU cores (measured: synthesis
#                                         # 5 min, training 117 min, evaluation ~25 min)
#
# Environment overrides: GRADNAP_CACHE (cache root, default ~/.cache/gradnap), EPOCHS,
# THREADS, PYTHON (default .venv/bin/python). A run that was stopped (Ctrl-C) continues
# where it stopped when the script is started again (training resumes from
# $RUN/last.pt). The model card's figures come from the eval step's JSON files.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Corpus (shared with the other training script) and the `gradnap` command.
source scripts/train_corpus.sh
RUN=$CACHE/runs/default16k
EPOCHS=${EPOCHS:-15}
THREADS=${THREADS:-2}

# 2. Train: all voices but awb; 5% of the sentences held out (valid / test halves).
mkdir -p "$RUN"
RESUME=()
if [ -f "$RUN/last.pt" ] && [ ! -f "$RUN/done" ]; then RESUME=(--resume); fi
if [ ! -f "$RUN/done" ]; then
    gradnap train --corpus "$CORPUS" --config default --out "$RUN/default.pt" \
        --run-dir "$RUN" --epochs "$EPOCHS" --lr 1e-3 --warmup-steps 300 \
        --max-frames 8000 --max-batch 32 --seed 0 --holdout-voice "$HOLDOUT_VOICE" \
        --float16 --threads "$THREADS" "${RESUME[@]}"
    touch "$RUN/done"
fi

# 3. Evaluate the float16 checkpoint: held-out sentences of the training voices, and
#    the held-out voice.
for split in test heldout holdout-voice; do
    gradnap eval --model "$RUN/default.pt" --corpus "$CORPUS" --split "$split" \
        --beam-size 32 --threads "$THREADS" --json "$RUN/eval-$split.json" --no-progress
    # beam search with a character 6-gram LM from the training transcripts
    gradnap eval --model "$RUN/default.pt" --corpus "$CORPUS" --split "$split" \
        --beam-size 32 --char-lm 6 --lm-weight 0.3 --threads "$THREADS" \
        --json "$RUN/eval-$split-lm.json" --no-progress
done

# 4. Ship it.
cp "$RUN/default.pt" src/gradnap/data/default.pt
echo "default checkpoint: src/gradnap/data/default.pt ($(du -h src/gradnap/data/default.pt | cut -f1))"

# 5. The model card's tables (training curve, CER/WER, per voice).
"$PYTHON" scripts/model_card_tables.py "$RUN"
