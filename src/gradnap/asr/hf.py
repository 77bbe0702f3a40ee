"""Hugging Face ``transformers`` CTC checkpoints from a local directory as gradnap models.

:func:`load_hf_model` reads a directory written by ``save_pretrained`` (``config.json``,
the weights, and the tokenizer and feature-extractor files) of a ``Wav2Vec2ForCTC``,
``HubertForCTC``, ``WavLMForCTC`` or any ``*ForCTC`` with the same interface (waveform
input ``input_values``, a convolutional front end ``<base>.feature_extractor`` described
by ``config.conv_kernel`` / ``config.conv_stride``, encoder layers
``<base>.encoder.layers``, an ``lm_head``). Nothing is downloaded (``local_files_only``).

The result is an :class:`HFCTCModel`: an ``nn.Module`` whose ``named_modules()`` are the
checkpoint's own (``wav2vec2.feature_extractor.conv_layers.6``,
``wav2vec2.encoder.layers.3``, ``lm_head`` ...), whose input is the waveform ``(B, 1, N)``
(normalised by :func:`gradnap.features.waveform_input` as ``preprocessor_config.json``
says) and whose output is logits ``(B, K, T')`` in gradnap's class order:

* classes 0..28 are gradnap's alphabet (a-z, space, apostrophe, blank = 28): letters
  are the checkpoint's single-letter tokens (either case), space is the word delimiter
  (``word_delimiter_token``, ``|``), the blank is the pad token (the CTC blank of
  ``transformers``' CTC loss); a class the vocabulary lacks gets the constant logit
  :data:`MISSING_LOGIT` (probability 0);
* every other output of the checkpoint (``<s>``, ``<unk>``, digits, other scripts ...)
  follows as class 29, 30, ... in the order of its token id, so no probability mass is
  dropped; these tokens are listed in a warning when the model is loaded and in
  ``model.metadata["unknown_tokens"]``, and the grapheme grouping labels them by their
  token (:meth:`Vocabulary.labels`).

What the engines and the collector need to know about the model's layers is computed
once, on two short probe inputs, when it is built (:class:`LayerInfo`): which modules
output time-major ``(B, T, C)`` tensors, which positions of the conv front end each
module's output has, and which modules lie above the last attention block (there the
sensitivity of output frame ``tau`` lives at position ``tau`` alone).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradnap.defaults import ALPHABET, BLANK_INDEX, METHOD, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec, Geometry

__all__ = [
    "HFCTCModel",
    "LayerInfo",
    "Vocabulary",
    "attention_window_layout",
    "is_hf_checkpoint",
    "load_hf_model",
    "read_feature_config",
    "read_vocabulary",
    "vocabulary_from_tokens",
    "first_tensor",
    "replace_first",
    "MISSING_LOGIT",
]

log = logging.getLogger(__name__)

#: Logit of a gradnap class that the checkpoint's vocabulary lacks: its softmax
#: probability is exactly 0 in float32 beside any real logit.
MISSING_LOGIT = -1.0e4

#: Module types that may run above the last encoder layer for the model's head to count
#: as position-wise (with the containers that hold the last encoder layer).
_POINTWISE = (nn.LayerNorm, nn.Dropout, nn.Linear, nn.Identity)


def is_hf_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a directory with a ``config.json`` (a ``save_pretrained`` layout)."""
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file()


def _read_json(path: Path, required: bool = True) -> dict:
    if not path.is_file():
        if required:
            raise GradnapError(f"{path}: missing (a Hugging Face checkpoint needs it)")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GradnapError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise GradnapError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _token(value: Any) -> str | None:
    """A special token as stored by ``transformers``: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Vocabulary:
    """The checkpoint's output classes in gradnap's order (see the module doc)."""

    #: For each gradnap class 0..28 the checkpoint's output index, ``None`` when missing.
    letters: tuple[int | None, ...]
    #: Checkpoint outputs outside gradnap's alphabet: ``(index, token)``, classes 29, ...
    extra: tuple[tuple[int, str], ...]
    #: The checkpoint's tokens of the word delimiter and the pad (blank) token.
    delimiter: str
    pad: str

    @property
    def num_classes(self) -> int:
        return len(self.letters) + len(self.extra)

    @property
    def missing(self) -> list[str]:
        """gradnap classes the checkpoint cannot predict (as labels)."""
        names = list(ALPHABET) + ["<blank>"]
        return [names[k] for k, i in enumerate(self.letters) if i is None]

    def order(self) -> list[int]:
        """Checkpoint output index per gradnap class (``-1``: missing)."""
        return [(-1 if i is None else i) for i in self.letters] + [i for i, _ in self.extra]

    def labels(self) -> tuple[str, ...]:
        """A distinct printable label per class: gradnap's for 0..28, the token for the
        others (``token#k`` when the token is empty or another class's label, ``k`` the
        class index)."""
        from gradnap.alphabet import class_label

        out = [class_label(k) for k in range(len(self.letters))]
        for j, (_, tok) in enumerate(self.extra):
            k = len(self.letters) + j
            out.append(tok if tok and tok not in out else f"{tok}#{k}")
        return tuple(out)


def read_vocabulary(directory: str | Path, num_outputs: int) -> Vocabulary:
    """The class mapping of a checkpoint from its tokenizer files (``vocab.json``,
    ``tokenizer_config.json``, ``special_tokens_map.json``); ``num_outputs``: the size
    of the model's output layer. Raises :class:`GradnapError` naming the file when the
    vocabulary is unusable (no pad token, indices out of range, two tokens on one index).
    """
    directory = Path(directory)
    vocab_file = directory / "vocab.json"
    vocab = _read_json(vocab_file)
    if vocab and all(isinstance(v, dict) for v in vocab.values()):  # {lang: {token: id}}
        raise GradnapError(
            f"{vocab_file}: a multilingual vocabulary ({', '.join(sorted(vocab)[:4])} ...); "
            "save the checkpoint with the tokenizer of one language"
        )
    tok_cfg = _read_json(directory / "tokenizer_config.json", required=False)
    special = _read_json(directory / "special_tokens_map.json", required=False)
    pad = _token(special.get("pad_token")) or _token(tok_cfg.get("pad_token")) or "<pad>"
    delimiter = _token(tok_cfg.get("word_delimiter_token")) or "|"
    try:
        return vocabulary_from_tokens(vocab, num_outputs, pad, delimiter)
    except GradnapError as exc:
        raise GradnapError(f"{vocab_file}: {exc}") from None


def vocabulary_from_tokens(
    vocab: dict[str, Any], num_outputs: int, pad: str = "<pad>", delimiter: str = "|"
) -> Vocabulary:
    """The class mapping of a ``{token: output index}`` vocabulary (see the module doc)."""
    tokens: dict[int, str] = {}
    for tok, idx in vocab.items():
        if not isinstance(idx, int) or not 0 <= idx < num_outputs:
            raise GradnapError(
                f"token {tok!r} has index {idx!r}; the model has {num_outputs} outputs"
            )
        if idx in tokens:
            raise GradnapError(f"tokens {tokens[idx]!r} and {tok!r} share index {idx}")
        tokens[idx] = tok
    index = {t: i for i, t in tokens.items()}
    if pad not in index:
        raise GradnapError(f"the pad token {pad!r} (the CTC blank) is not in the vocabulary")
    letters: list[int | None] = [None] * (len(ALPHABET) + 1)
    letters[BLANK_INDEX] = index[pad]
    used = {index[pad]}

    def claim(k: int, tok: str) -> None:
        if tok in index and index[tok] not in used and letters[k] is None:
            letters[k] = index[tok]
            used.add(index[tok])

    space = ALPHABET.index(" ")
    claim(space, delimiter)
    claim(space, " ")
    for k, ch in enumerate(ALPHABET):
        if ch != " ":
            claim(k, ch)
            claim(k, ch.upper())
    extra = tuple((i, tokens.get(i, f"<{i}>")) for i in range(num_outputs) if i not in used)
    return Vocabulary(tuple(letters), extra, delimiter, pad)


def read_feature_config(directory: str | Path) -> FeatureConfig:
    """Waveform input settings from ``preprocessor_config.json`` (``sampling_rate``,
    ``do_normalize``); a missing file means 16 kHz, normalised (with a warning)."""
    path = Path(directory) / "preprocessor_config.json"
    cfg = _read_json(path, required=False)
    if not cfg:
        log.warning("%s: missing; assuming 16 kHz waveform input, normalised", path)
    rate = cfg.get("sampling_rate", 16000)
    if not isinstance(rate, int) or rate <= 0:
        raise GradnapError(f"{path}: sampling_rate {rate!r} is not a positive integer")
    size = cfg.get("feature_size", 1)
    if size != 1:
        raise GradnapError(
            f"{path}: feature_size {size!r}; gradnap reads waveform models (feature_size 1)"
        )
    normalize = "utterance" if cfg.get("do_normalize", True) else "none"
    return FeatureConfig(sample_rate=rate, normalize=normalize, input="waveform")


@dataclass(frozen=True)
class LayerInfo:
    """What a module's output looks like (measured on probe inputs)."""

    #: The output (its first tensor, for tuple outputs) is ``(B, T, C)``.
    time_major: bool
    #: The layer number in the front end's :class:`~gradnap.geometry.Geometry` whose
    #: positions the output has (0 = input samples, ``L`` = the front end's output
    #: frames), or ``None`` when the length matches none (e.g. a padded convolution).
    stage: int | None
    #: Input samples per position.
    jump: float
    #: The module runs above the last attention block: the sensitivity of output frame
    #: ``tau`` is non-zero at position ``tau`` alone.
    pointwise: bool


class HFCTCModel(nn.Module):
    """A ``transformers`` ``*ForCTC`` model as a gradnap model (see the module doc).

    ``forward``: waveform ``(B, 1, N)`` -> logits ``(B, K, T')``. Attributes read by
    gradnap: ``output_kind`` (logits), ``features`` (waveform input settings),
    ``metadata``, ``labels`` (a label per class), ``frontend`` (the conv front end's
    :class:`~gradnap.geometry.Geometry`), ``default_layers``, ``layer_info``
    (:class:`LayerInfo` per module name), ``pointwise_after`` and :meth:`window_layout`.

    ``pointwise_after``: the modules whose outputs carry all of the output's dependence on
    the layers below them, each at the output frame's own position: the last encoder
    layer's input and its attention output (whatever follows the last attention block,
    its feed-forward block, layer norms and ``lm_head``, acts on each position alone), or
    else the last encoder layer's output; ``None`` when neither passes the checks made
    when the model is built (module types, then a numerical check on a random input).
    """

    output_kind = "logits"
    #: The ``transformers`` model (outside the module tree: its children are this one's).
    hf: Any
    #: The checkpoint's output index per class (``-1``: missing), a buffer.
    class_order: torch.Tensor

    def __init__(
        self,
        hf: Any,
        vocabulary: Vocabulary,
        features: FeatureConfig,
        metadata: dict | None = None,
    ) -> None:
        super().__init__()
        # the checkpoint's own children, so that module names and state-dict keys are its
        # own; the model itself is kept outside the module tree
        for name, child in hf.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "hf", hf)
        self.vocabulary = vocabulary
        self.labels = vocabulary.labels()
        self.features = features
        self.metadata: dict = dict(metadata or {})
        self.register_buffer(
            "class_order", torch.tensor(vocabulary.order(), dtype=torch.int64), persistent=False
        )
        cfg = hf.config
        prefix = getattr(hf, "base_model_prefix", "")
        base = getattr(hf, prefix, None)
        where = type(hf).__name__
        if not (hasattr(cfg, "conv_kernel") and hasattr(cfg, "conv_stride")) or base is None:
            raise GradnapError(
                f"{where}: not a waveform CTC model with a convolutional front end "
                "(config.conv_kernel / conv_stride)"
            )
        convs = [
            (n, m)
            for n, m in self.named_modules()
            if n.startswith(f"{prefix}.feature_extractor.conv_layers.") and isinstance(m, nn.Conv1d)
        ]
        specs = [ConvSpec.from_conv(m) for _, m in convs]
        expected = [
            ConvSpec(int(k), int(s)) for k, s in zip(cfg.conv_kernel, cfg.conv_stride, strict=True)
        ]
        if specs != expected:
            raise GradnapError(
                f"{where}: the front end's convolutions {specs} differ from the config's "
                f"kernels {list(cfg.conv_kernel)} and strides {list(cfg.conv_stride)}"
            )
        self.frontend = Geometry(tuple(expected))
        L = self.frontend.num_layers
        self.frontend_layers = [f"{prefix}.feature_extractor.conv_layers.{i}" for i in range(L)]
        encoder = getattr(getattr(base, "encoder", None), "layers", None)
        if not isinstance(encoder, nn.ModuleList) or len(encoder) == 0:
            raise GradnapError(f"{where}: no encoder layers at {prefix}.encoder.layers")
        self.encoder_layers = [f"{prefix}.encoder.layers.{i}" for i in range(len(encoder))]
        if not isinstance(getattr(hf, "lm_head", None), nn.Linear):
            raise GradnapError(f"{where}: no lm_head (a CTC model's output layer)")
        self.default_layers = [self.frontend_layers[-1], *self.encoder_layers, "lm_head"]
        self.pointwise_after: tuple[str, ...] | None = None
        self.layer_info: dict[str, LayerInfo] = {}
        self.eval()
        self._probe()

    def train(self, mode: bool = True) -> HFCTCModel:
        super().train(mode)
        self.hf.train(mode)
        return self

    @property
    def time_major(self) -> frozenset[str]:
        """Names of the modules whose output is ``(B, T, C)``."""
        return frozenset(n for n, i in self.layer_info.items() if i.time_major)

    @property
    def receptive_field(self) -> int:
        """Input samples of one output frame of the front end."""
        return self.frontend.receptive_field(self.frontend.num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform ``(B, 1, N)`` -> logits ``(B, K, T')`` in gradnap's class order."""
        if x.dim() != 3 or x.shape[1] != 1:
            raise GradnapError(
                f"input: expected a (batch, 1, samples) waveform, got {tuple(x.shape)}"
            )
        n = int(x.shape[2])
        if self.frontend.output_length(n) == 0:
            ms = 1000.0 * self.receptive_field / self.features.sample_rate
            raise GradnapError(
                f"input of {n} samples is shorter than the front end's receptive field "
                f"({self.receptive_field} samples, {ms:.0f} ms)"
            )
        logits = self.hf(input_values=x[:, 0, :], return_dict=True).logits  # (B, T', V)
        return self._gradnap_order(logits)

    def forward_padded(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward pass of a zero-padded batch of waveforms ``(B, 1, N)`` with utterance
        ``b`` in samples ``0 .. lengths[b] - 1``: the attention mask keeps the padding
        out of the encoder, so each utterance's logits are those it has alone (to float
        rounding). Returns logits ``(B, K, T')`` in gradnap's class order and the output
        lengths ``(B,)`` (the front end's, :attr:`frontend`)."""
        lengths = torch.as_tensor(lengths, dtype=torch.int64)
        mask = (torch.arange(x.shape[2])[None, :] < lengths[:, None]).long()  # (B, N)
        logits = self.hf(input_values=x[:, 0, :], attention_mask=mask).logits  # (B, T', V)
        out_lens = torch.tensor(
            [self.frontend.output_length(int(n)) for n in lengths], dtype=torch.int64
        )
        return self._gradnap_order(logits), out_lens

    def _gradnap_order(self, logits: torch.Tensor) -> torch.Tensor:
        """The checkpoint's logits ``(B, T', V)`` as gradnap's classes ``(B, K, T')``."""
        b, t, _ = logits.shape
        fill = logits.new_full((b, t, 1), MISSING_LOGIT)
        order = torch.where(self.class_order < 0, logits.shape[2], self.class_order)
        return torch.cat([logits, fill], dim=2).index_select(2, order).transpose(1, 2)

    # --- layers --------------------------------------------------------------------

    def _probe(self) -> None:
        """Fill :attr:`layer_info` and :attr:`pointwise_after` from two short inputs."""
        L = self.frontend.num_layers
        stride = self.frontend.output_stride
        lengths = [self.receptive_field + (t - 1) * stride for t in (5, 6)]
        shapes: list[dict[str, tuple[int, ...]]] = []
        order: list[str] = []
        gen = torch.Generator().manual_seed(0)
        for n in lengths:
            seen: dict[str, tuple[int, ...]] = {}
            handles = []

            def make_hook(name: str, seen=seen):
                def hook(_module, _inputs, output):
                    first = first_tensor(output)
                    if first is not None:
                        seen[name] = tuple(first.shape)
                        if len(shapes) == 0:
                            order.append(name)

                return hook

            for name, module in self.named_modules():
                if name:
                    handles.append(module.register_forward_hook(make_hook(name)))
            try:
                with torch.no_grad():
                    self(torch.randn(1, 1, n, generator=gen))
            finally:
                for h in handles:
                    h.remove()
            shapes.append(seen)
        infos: dict[str, tuple[bool, int | None, float]] = {}
        for name in order:
            a, b = shapes[0].get(name), shapes[1].get(name)
            if a is None or b is None or len(a) != 3 or a[0] != 1:
                continue
            changed = [d for d in (1, 2) if a[d] != b[d]]
            if len(changed) != 1:
                continue  # no time axis (a weight, an attention map)
            axis = changed[0]
            t = b[axis]
            stage = self._stage(name, t, lengths[1])
            jump = float(self.frontend.jump(stage)) if stage is not None else lengths[1] / t
            infos[name] = (axis == 1, stage, jump)
        if L and self.frontend_layers[-1] not in infos:
            raise GradnapError(f"{type(self.hf).__name__}: the front end did not run")
        self.pointwise_after = None
        above: set[str] = set()
        for sources in self._cut_candidates():
            above = self._above(order, sources)
            if above and self._check_cut(sources, infos, lengths[1]):
                self.pointwise_after = sources
                break
            above = set()
        if self.pointwise_after is None:
            log.warning(
                "%s: the output is not position-wise above the last attention block: "
                "every layer gets the utterance-wide backward pass",
                type(self.hf).__name__,
            )
        self.layer_info = {n: LayerInfo(*i, n in above) for n, i in infos.items()}

    def _cut_candidates(self) -> list[tuple[str, ...]]:
        """Where the position-wise head may start, best first: at the last encoder layer's
        attention output together with that layer's input (the residual stream), then at
        the last encoder layer's output."""
        last = self.encoder_layers[-1]
        prefix = self.hf.base_model_prefix
        before = self.encoder_layers[-2] if len(self.encoder_layers) > 1 else None
        before = before or f"{prefix}.encoder.dropout"
        return [(before, f"{last}.attention"), (last,)]

    def _above(self, order: list[str], sources: tuple[str, ...]) -> set[str]:
        """The modules that finish at or after the last of ``sources``, when every one of
        them (but the sources' containers) is position-wise by its type; else the empty
        set."""
        if not all(s in order for s in sources):
            return set()
        first = max(order.index(s) for s in sources)
        above = order[first:]
        modules = dict(self.named_modules())

        def pointwise(name: str) -> bool:
            m = modules[name]
            leaves = [c for c in m.modules() if not any(c.children())]
            return all(_is_pointwise(c) for c in leaves)

        for name in above[1:]:
            holds = any(s.startswith(name + ".") for s in sources)
            if not holds and not pointwise(name):
                log.info("%s runs above %s: no position-wise head there", name, sources[-1])
                return set()
        return set(above)

    def _check_cut(
        self, sources: tuple[str, ...], infos: dict[str, tuple[bool, int | None, float]], n: int
    ) -> bool:
        """Numerical check of a cut (the structural rule of :meth:`_above` cannot see
        functional operations): on a random input, the output at one frame depends on
        the sources at that frame alone, and the gradient with respect to the front end's
        output through the sources (the first kept in the graph, the others cut from it)
        equals the direct one."""
        modules = dict(self.named_modules())
        front = f"{self.hf.base_model_prefix}.feature_extractor"
        x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(1))
        w = torch.randn(self.vocabulary.num_classes, generator=torch.Generator().manual_seed(2))

        def run(cut: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            store: dict[str, torch.Tensor] = {}

            def make_hook(name: str):
                def hook(_module, _inputs, output):
                    first = first_tensor(output)
                    assert first is not None
                    if name == front:
                        first = first.detach().requires_grad_(True)
                    store[name] = first
                    if cut and name in sources[1:]:
                        store[name + "#leaf"] = first = first.detach().requires_grad_(True)
                    return replace_first(output, first)

                return hook

            handles = [modules[s].register_forward_hook(make_hook(s)) for s in (front, *sources)]
            try:
                with torch.enable_grad():
                    y = self(x)
            finally:
                for h in handles:
                    h.remove()
            return y, store

        y, store = run(cut=True)
        tau = y.shape[2] // 2
        tops = [store.get(s + "#leaf", store[s]) for s in sources]
        target = (y[0, :, tau] * w).sum()
        seeds = torch.autograd.grad(target, tops, retain_graph=True, allow_unused=True)
        for s, g in zip(sources, seeds, strict=True):
            if g is None:
                return False
            g = g.abs().sum(dim=2 if infos[s][0] else 1)[0]  # (T,)
            if not (g[tau] > 0 and (g[:tau] == 0).all() and (g[tau + 1 :] == 0).all()):
                log.info("%s: the output at one frame depends on other frames", s)
                return False
        (split,) = torch.autograd.grad([store[s] for s in sources], store[front], list(seeds))
        y, store = run(cut=False)
        (direct,) = torch.autograd.grad((y[0, :, tau] * w).sum(), store[front])
        scale = float(direct.abs().max())
        if not scale > 0 or float((split - direct).abs().max()) > 1e-4 * scale:
            log.info("%s do not carry all of the output's dependence", ", ".join(sources))
            return False
        return True

    def _stage(self, name: str, length: int, n: int) -> int | None:
        """The front-end layer number whose positions a module's output has."""
        L = self.frontend.num_layers
        for i, conv in enumerate(self.frontend_layers):
            if name == conv or name.startswith(conv + "."):
                return i + 1
        if length == self.frontend.output_length(n):
            return L
        return None

    def window_layout(
        self, layers: list[str], seconds: float = METHOD.attention_window_seconds
    ) -> tuple[dict[str, tuple[int, float]], tuple[float, float]]:
        """Window width and jump of each of ``layers`` and the output clock
        (:func:`attention_window_layout`)."""
        return attention_window_layout(
            self.frontend, self.layer_info, self.features, layers, seconds
        )


def attention_window_layout(
    frontend: Geometry,
    layer_info: dict[str, LayerInfo],
    features: FeatureConfig,
    layers: list[str],
    seconds: float = METHOD.attention_window_seconds,
) -> tuple[dict[str, tuple[int, float]], tuple[float, float]]:
    """Window width and jump (input positions per position) of each of ``layers`` of a
    model with a conv front end ``frontend`` below attention blocks, and the output clock
    ``(stride, offset)`` in input positions (docs/method.md §1.3).

    Widths: one position above the last attention block (``LayerInfo.pointwise``);
    elsewhere the positions of ``K`` front-end output frames (``K`` = ``seconds`` in
    frames, rounded down to an odd number) through the front end's geometry."""
    g = frontend
    L = g.num_layers
    samples = 1 if features.input == "waveform" else features.hop_length  # per input position
    frames = seconds * features.sample_rate / (g.output_stride * samples)
    K = 2 * int(math.floor(frames / 2)) + 1
    out: dict[str, tuple[int, float]] = {}
    for name in layers:
        if name == "input":
            lo, hi = g.span(0, K - 1, L, 0)
            out[name] = (hi - lo + 1, 1.0)
            continue
        info = layer_info.get(name)
        if info is None:
            raise GradnapError(f"layer {name!r} has no time axis (not a layer of positions)")
        if info.pointwise:
            width = 1
        elif info.stage is not None:
            lo, hi = g.span(0, K - 1, L, info.stage)
            width = hi - lo + 1
        else:
            width = max(1, round(K * g.output_stride / info.jump)) | 1
        out[name] = (width, info.jump)
    return out, (float(g.output_stride), float(g.centre(0, L)))


def _is_pointwise(module: nn.Module) -> bool:
    """A leaf module that acts on each position alone: layer norm, dropout, linear maps,
    identity, and elementwise activations (``torch.nn``'s and ``transformers``')."""
    if isinstance(module, _POINTWISE):
        return True
    if isinstance(module, nn.MultiheadAttention):
        return False
    kind = type(module).__module__
    return kind == "torch.nn.modules.activation" or kind == "transformers.activations"


def first_tensor(output: Any) -> torch.Tensor | None:
    """A module output's tensor: the output itself, or the first element of a tuple or
    ``ModelOutput`` (``transformers``' encoder layers return tuples in some versions,
    its models ``ModelOutput`` dicts); ``None`` for anything else."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict) and output:
        first = next(iter(output.values()))
        if isinstance(first, torch.Tensor):
            return first
    return None


def replace_first(output: Any, value: torch.Tensor) -> Any:
    """``output`` with its tensor (see :func:`first_tensor`) replaced by ``value``."""
    if isinstance(output, torch.Tensor):
        return value
    if isinstance(output, tuple):
        return (value, *output[1:])
    key = next(iter(output))
    output[key] = value
    return output


def load_hf_model(directory: str | Path) -> HFCTCModel:
    """An :class:`HFCTCModel` in eval mode from a ``save_pretrained`` directory (see the
    module doc). Needs the ``transformers`` package (the ``hf`` extra: ``pip install
    gradnap[hf]``); reads local files only."""
    directory = Path(directory)
    try:
        import transformers
    except ImportError:
        raise GradnapError(
            f"{directory}: a Hugging Face checkpoint; reading it needs the transformers "
            "package (pip install 'gradnap[hf]')"
        ) from None
    config = _read_json(directory / "config.json")
    archs = config.get("architectures") or []
    arch = archs[0] if archs and isinstance(archs[0], str) else None
    if arch is not None and not arch.endswith("ForCTC"):
        raise GradnapError(f"{directory}: a {arch}, not a CTC model (*ForCTC)")
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        cls = transformers.AutoModelForCTC
    try:
        hf = cls.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise GradnapError(f"{directory}: cannot load the checkpoint ({exc})") from None
    hf = hf.float().eval()
    n_out = int(hf.lm_head.out_features) if hasattr(hf, "lm_head") else 0
    vocab = read_vocabulary(directory, n_out)
    features = read_feature_config(directory)
    blank_id = vocab.letters[BLANK_INDEX]
    pad_id = getattr(hf.config, "pad_token_id", None)
    if pad_id is not None and pad_id != blank_id:
        log.warning(
            "%s: the config's pad_token_id %s (the blank of transformers' CTC loss) is not "
            "the tokenizer's pad token %r (%s); the tokenizer's is the blank",
            directory,
            pad_id,
            vocab.pad,
            blank_id,
        )
    unknown = [f"{BLANK_INDEX + 1 + j}: {tok!r}" for j, (_, tok) in enumerate(vocab.extra)]
    if unknown:
        log.warning(
            "%s: %d output(s) outside gradnap's alphabet are kept as extra classes "
            "(labelled by their token in the grapheme grouping): %s",
            directory,
            len(unknown),
            ", ".join(unknown),
        )
    if vocab.missing:
        log.info(
            "%s: the vocabulary has no %s (never predicted)",
            directory,
            ", ".join(repr(c) for c in vocab.missing),
        )
    metadata = {
        "source": str(directory),
        "architecture": type(hf).__name__,
        "transformers": transformers.__version__,
        "unknown_tokens": [tok for _, tok in vocab.extra],
        "missing_classes": vocab.missing,
    }
    return HFCTCModel(hf, vocab, features, metadata)
