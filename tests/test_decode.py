import itertools
import math

import pytest
import torch

from gradnap.alphabet import encode_text
from gradnap.asr.decode import BeamDecoder, ctc_collapse, greedy_decode, greedy_decode_batch
from gradnap.defaults import BLANK_INDEX as B
from gradnap.defaults import NUM_CLASSES
from gradnap.errors import GradnapError

A, BB, SP = 0, 1, 26  # 'a', 'b', space


def peaked(path: list[int], p: float = 0.9) -> torch.Tensor:
    """Probabilities (K, T) with mass ``p`` on ``path[t]`` at frame t."""
    probs = torch.full((NUM_CLASSES, len(path)), (1 - p) / (NUM_CLASSES - 1))
    for t, k in enumerate(path):
        probs[k, t] = p
    return probs


def test_ctc_collapse():
    assert ctc_collapse([A, A, B, A, BB, BB]) == [A, A, BB]
    assert ctc_collapse([B, B, B]) == []
    assert ctc_collapse([A, A, A]) == [A]
    assert ctc_collapse([]) == []


def test_greedy_known_answers():
    assert greedy_decode(peaked([A, A, B, A, BB, BB])) == "aab"
    # h e l l <b> l o _ space
    path = encode_text("hel") + [B] + encode_text("lo") + [SP] + encode_text("w")
    assert greedy_decode(peaked(path)) == "hello w"
    # logits and log-probabilities decode the same
    assert greedy_decode(peaked(path).log() * 3.0 + 1.0) == "hello w"
    # only the first `length` frames count
    assert greedy_decode(peaked([A, B, BB]), length=2) == "a"


def test_greedy_batch_respects_lengths():
    x = torch.stack([peaked([A, B, BB, BB]), peaked([BB, BB, B, A])])
    assert greedy_decode_batch(x, [4, 2]) == ["ab", "b"]
    with pytest.raises(GradnapError):
        greedy_decode(x)


def two_class(p_a: list[float]) -> torch.Tensor:
    """Log-probabilities where frame t has p(a) = p_a[t], p(blank) = rest (others ~0)."""
    probs = torch.full((NUM_CLASSES, len(p_a)), 1e-9)
    for t, pa in enumerate(p_a):
        probs[A, t] = pa
        probs[B, t] = 1 - pa
    return (probs / probs.sum(0, keepdim=True)).log()


def test_beam_sums_paths_greedy_does_not():
    # p(a) = 0.4 per frame: best path is blank-blank (0.36) -> "", but "a" has
    # 0.16 + 0.24 + 0.24 = 0.64 summed over its three paths.
    lp = two_class([0.4, 0.4])
    assert greedy_decode(lp) == ""
    assert BeamDecoder(beam_size=8, log_add=True).decode(lp) == "a"
    # with max instead of log-add (Viterbi) the best single path wins again
    assert BeamDecoder(beam_size=8, log_add=False).decode(lp) == ""


def test_beam_known_paths():
    dec = BeamDecoder(beam_size=16)
    assert dec.decode(peaked([A, A, B, A, BB, BB]).log()) == "aab"
    path = [B] + encode_text("the") + [SP, SP] + encode_text("cat") + [B, B]
    assert dec.decode(peaked(path).log()) == "the cat"
    # leading / trailing / doubled spaces are normalised
    assert dec.decode(peaked([SP, A, SP, SP, B, SP, BB, SP]).log()) == "a b"
    # padding frames past `length` are ignored
    lp = torch.stack([peaked([A, B, BB]).log(), peaked([BB, A, A]).log()])
    assert dec.decode_batch(lp, [3, 1]) == ["ab", "b"]


def _brute_force_best(lp: torch.Tensor, classes: list[int]) -> tuple[str, float, float]:
    """Most probable labelling (summing its paths over ``classes``), its probability and
    the runner-up's."""
    scores: dict[tuple[int, ...], float] = {}
    t = lp.shape[1]
    for path in itertools.product(classes, repeat=t):
        p = math.exp(sum(float(lp[k, i]) for i, k in enumerate(path)))
        key = tuple(ctc_collapse(path))
        scores[key] = scores.get(key, 0.0) + p
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    text = "".join("ab"[k] if k in (A, BB) else " " for k in ranked[0][0])
    return text, ranked[0][1], ranked[1][1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    t = 6
    classes = [A, BB, B]
    probs = torch.full((NUM_CLASSES, t), 1e-12)
    probs[classes] = torch.rand(3, t, generator=g) + 0.05
    lp = (probs / probs.sum(0, keepdim=True)).log()
    best, p1, p2 = _brute_force_best(lp, classes)
    assert p1 > 1.05 * p2  # a clear winner, so the answer is well defined
    assert BeamDecoder(beam_size=64, beam_threshold=100.0).decode(lp) == best.strip()


def test_beam_rejects_bad_shape():
    with pytest.raises(GradnapError):
        BeamDecoder().decode(torch.zeros(2, 3, 4))
    with pytest.raises(GradnapError):
        BeamDecoder(beam_size=0)


def test_char_lm_probabilities():
    from gradnap.asr.decode import CharNgramLM

    lm = CharNgramLM(["ab ab", "abba"], order=3)
    vocab = range(NUM_CLASSES - 1 + 1)  # 28 symbols + end of sentence
    for ctx in ([], [A], [A, BB], [SP, SP], [5, 6]):
        assert sum(lm.prob(ctx, t) for t in vocab) == pytest.approx(1.0)
    assert lm.prob([A], BB) > 0.5 > lm.prob([A], A)  # "a" is followed by "b"
    assert lm.prob([5, 6], A) > 0  # unseen context: backs off, never zero
    with pytest.raises(GradnapError):
        CharNgramLM([], order=3)


def test_beam_with_char_lm_prefers_known_spelling():
    from gradnap.asr.decode import CharNgramLM

    # frame 3 is ambiguous: a 0.50, b 0.45 -> greedy "aa"; the LM knows "ab"
    probs = torch.full((NUM_CLASSES, 3), 1e-6)
    probs[A, 0], probs[B, 1] = 1.0, 1.0
    probs[A, 2], probs[BB, 2], probs[B, 2] = 0.50, 0.45, 0.05
    lp = (probs / probs.sum(0, keepdim=True)).log()
    assert greedy_decode(lp) == "aa"
    assert BeamDecoder(beam_size=16).decode(lp) == "aa"
    lm = CharNgramLM(["ab"] * 20 + ["ba"], order=2)
    assert BeamDecoder(beam_size=16, lm=lm, lm_weight=1.0).decode(lp) == "ab"


def test_greedy_normalises_spaces():
    path = [SP, SP, A, SP, B, SP, SP, BB, SP]
    assert greedy_decode(peaked(path)) == "a b"
    assert greedy_decode_batch(peaked(path)[None], [len(path)]) == ["a b"]
