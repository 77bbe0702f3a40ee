"""A small convolution + self-attention CTC model on log-mel input (the shipped
``transformer`` model; its configs are :class:`gradnap.asr.config.ConvTransformerConfig`).

Modules, by the names the engines address them (input ``(B, F, T)`` log-mel):

- ``conv1``, ``conv2`` ...: the front end, each a ``Conv1d`` (``conv``) and a ``ReLU``
  (``relu``), output ``(B, C, T_l)``; the first is strided (stride 3 in the shipped ``transformer``: one output frame per 24 ms);
- ``position``: the front end's output plus a depthwise convolution of it (a relative
  position signal for the attention, as wav2vec 2.0's convolutional position embedding),
  ``(B, C, T')``;
- ``blocks.0`` .. ``blocks.{n-1}``: pre-LN encoder blocks, ``x + attn(ln1(x))`` then
  ``x + ff(ln2(x))``, output time-major ``(B, T', C)``; ``blocks.i.attn`` is the
  self-attention's output before it joins the residual stream;
- ``norm`` (layer norm) and ``head`` (linear map to the classes), time-major.

``forward`` returns logits ``(B, K, T')``. What the engines and the collector need to know
about the layers is declared, as :class:`gradnap.asr.hf.HFCTCModel` declares it:
``time_major``, ``layer_info``, ``pointwise_after`` (the last block's input and its
attention output: everything above them acts on each position alone) and
:meth:`ConvTransformer.window_layout` (docs/method.md §1.3).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gradnap.asr.config import ConvTransformerConfig
from gradnap.asr.hf import LayerInfo, attention_window_layout
from gradnap.defaults import FEATURES, METHOD, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.geometry import Geometry

__all__ = ["ConvTransformer", "EncoderBlock", "SelfAttention"]


class SelfAttention(nn.Module):
    """Multi-head self-attention ``(B, T, C) -> (B, T, C)`` (``torch``'s fused
    scaled-dot-product attention)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(B, T, C)``; ``keep``: ``(B, T)`` bool, the positions that may be
        attended to (``None``: all)."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, T)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, C / H)
        return self.out(att.transpose(1, 2).reshape(b, t, c))


class EncoderBlock(nn.Module):
    """A pre-LN encoder block ``(B, T, C) -> (B, T, C)``: self-attention, then a GELU
    feed-forward layer, each added to the residual stream after dropout."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.drop1 = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(dim, ff_dim),
                act=nn.GELU(),
                drop=nn.Dropout(dropout),
                fc2=nn.Linear(ff_dim, dim),
            )
        )
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop1(self.attn(self.ln1(x), keep))
        return x + self.drop2(self.ff(self.ln2(x)))


class PositionConv(nn.Module):
    """``x + GELU(depthwise conv(x))`` on ``(B, C, T)`` ("same" zero padding)."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding="same", groups=dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.conv(x))


class ConvTransformer(nn.Module):
    """Conv front end + self-attention blocks: log-mel ``(B, F, T)`` -> logits ``(B, K, T')``
    (see the module doc)."""

    #: What ``forward`` returns; the engines read this.
    output_kind = "logits"

    def __init__(self, config: ConvTransformerConfig) -> None:
        super().__init__()
        self.config = config
        in_ch = config.n_features
        self.front_names: list[str] = []
        for i, (spec, out_ch) in enumerate(
            zip(config.conv_specs(), config.conv_channels, strict=True)
        ):
            symmetric = spec.pad_left == spec.pad_right
            padding: int | str = spec.pad_left if symmetric else "same"
            conv = nn.Conv1d(in_ch, out_ch, spec.kernel, stride=spec.stride, padding=padding)
            name = f"conv{i + 1}"
            self.add_module(name, nn.Sequential(OrderedDict(conv=conv, relu=nn.ReLU())))
            self.front_names.append(name)
            in_ch = out_ch
        d = config.dim
        self.position = PositionConv(d, config.position_kernel) if config.position_kernel else None
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            EncoderBlock(d, config.heads, config.ff_dim, config.dropout)
            for _ in range(config.num_blocks)
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.num_classes)
        self.reset_parameters()
        #: Feature settings the model expects (a checkpoint sets them).
        self.features: FeatureConfig = FEATURES
        #: Training metadata from a checkpoint (empty for a new model).
        self.metadata: dict = {}
        n = config.num_blocks
        last = f"blocks.{n - 1}"
        #: The last block's input (the residual stream) and its attention output carry all
        #: of the output's dependence on the layers below, each at the output frame's own
        #: position (:mod:`gradnap.engine._hooked`).
        self.pointwise_after: tuple[str, ...] = (
            f"blocks.{n - 2}" if n > 1 else "dropout",
            f"{last}.attn",
        )
        #: The engines' default layers: the input, the front end, every block, the output.
        self.default_layers = ["input", *self.front_names, *(f"blocks.{i}" for i in range(n))]
        self.default_layers.append("head")
        self.layer_info = self._layer_info()
        self.eval()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He (Kaiming) normal initialisation of the ReLU front end (as Wav2Letter's),
        Xavier uniform of the linear maps, zero biases, layer norms at identity."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv1d):
                gain: Literal["relu", "linear"] = "relu" if name.startswith("conv") else "linear"
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity=gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _layer_info(self) -> dict[str, LayerInfo]:
        """:class:`LayerInfo` of every module, from the order in which the modules of a
        probe forward pass finish (those from the last block's attention on are
        position-wise)."""
        order: list[str] = []
        handles = [
            m.register_forward_hook(lambda *_, name=name: order.append(name))
            for name, m in self.named_modules()
            if name
        ]
        g = self.geometry
        L = g.num_layers
        probe = torch.zeros(1, self.config.n_features, g.receptive_field(L) + 4 * g.jump(L))
        try:
            with torch.no_grad():
                self.eval()(probe)
        finally:
            for h in handles:
                h.remove()
        first = order.index(self.pointwise_after[-1])
        info = {}
        for i, name in enumerate(order):
            top = name.split(".")[0]
            stage = self.front_names.index(top) + 1 if top in self.front_names else L
            time_major = top in ("dropout", "blocks", "norm", "head")
            info[name] = LayerInfo(time_major, stage, float(g.jump(stage)), i >= first)
        return info

    @property
    def geometry(self) -> Geometry:
        """The front end's geometry (output frame ``tau`` is its frame ``tau``)."""
        return self.config.geometry

    @property
    def time_major(self) -> frozenset[str]:
        """Names of the modules whose output is ``(B, T, C)``."""
        return frozenset(n for n, i in self.layer_info.items() if i.time_major)

    def output_frame_seconds(self, frame):
        """Seconds at the front end's receptive-field centre of output frame(s) ``frame``."""
        return self.config.output_frame_seconds(frame, self.features)

    def window_layout(
        self, layers: list[str], seconds: float = METHOD.attention_window_seconds
    ) -> tuple[dict[str, tuple[int, float]], tuple[float, float]]:
        """Window width and jump (input frames per position) of each of ``layers``, and the
        output clock (:func:`gradnap.asr.hf.attention_window_layout`)."""
        return attention_window_layout(
            self.geometry, self.layer_info, self.features, layers, seconds
        )

    def _encode(
        self, x: torch.Tensor, lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, K, T')`` and output lengths (``None`` when ``lengths`` is)."""
        keep = None
        for spec, name in zip(self.config.conv_specs(), self.front_names, strict=True):
            x = getattr(self, name)(x)
            if lengths is not None:
                lengths = torch.clamp(
                    (lengths + spec.pad_left + spec.pad_right - spec.span) // spec.stride + 1,
                    min=0,
                )
                keep = torch.arange(x.shape[2]) < lengths[:, None]  # (B, T_l)
                x = x * keep[:, None, :].to(x.dtype)
        if self.position is not None:
            x = self.position(x)
            if keep is not None:
                x = x * keep[:, None, :].to(x.dtype)
        h = self.dropout(x.transpose(1, 2))  # (B, T', C)
        for block in self.blocks:
            h = block(h, keep)
        logits = self.head(self.norm(h))  # (B, T', K)
        if keep is not None:
            logits = logits * keep[:, :, None].to(logits.dtype)
        return logits.transpose(1, 2), lengths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, F, T)`` -> logits ``(B, K, T')``."""
        if x.dim() != 3 or x.shape[1] != self.config.n_features:
            raise GradnapError(
                f"input: expected (batch, {self.config.n_features}, frames), got {tuple(x.shape)}"
            )
        if self.geometry.output_length(int(x.shape[2])) == 0:
            raise GradnapError(
                f"input of {x.shape[2]} frames is too short for the front end (no output frame)"
            )
        logits, _ = self._encode(x, None)
        return logits

    def forward_padded(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward pass of a zero-padded batch, as if each utterance ran alone (to float
        rounding): the front end's outputs are zeroed past each utterance's length (what
        "same" zero padding of a single utterance sees) and the attention does not look
        there. ``x``: ``(B, F, T)``; ``lengths``: ``(B,)`` int64. Returns logits
        ``(B, K, T')`` (zero past each length) and the output lengths ``(B,)``."""
        logits, out_lens = self._encode(x, torch.as_tensor(lengths, dtype=torch.int64))
        assert out_lens is not None
        return logits, out_lens
