"""Model files: one file with weights, config, alphabet, feature settings and metadata.

A gradnap checkpoint is a ``torch.save`` file holding a dict::

    {"format": "gradnap-wav2letter", "version": 1, "architecture": "wav2letter",
     "config": {...ModelConfig fields...}, "alphabet": [...], "blank_index": 28,
     "features": {...FeatureConfig fields...}, "state_dict": {...}, "dtype": "float32",
     "metadata": {...training metadata...}}

``architecture`` is ``"wav2letter"`` (a :class:`~gradnap.asr.model.Wav2Letter`; files
written before the key existed) or ``"conv-transformer"`` (a
:class:`~gradnap.asr.transformer.ConvTransformer`, ``config`` holding
:class:`~gradnap.asr.config.ConvTransformerConfig` fields).

Weights may be stored in float16 (``dtype="float16"``) to keep shipped files small; they
are loaded as float32, so the float16-rounded weights *are* the model.

:func:`load_model` also accepts ``"default"`` (the checkpoint shipped in
``gradnap/data/default.pt``), a bare state dict of a :class:`~gradnap.asr.model.Wav2Letter`,
and a state dict in torchaudio's ``Wav2Letter`` layout (``acoustic_model.<i>.weight``
for the power-spectrum / MFCC input types), which becomes the equivalent
:class:`~gradnap.asr.model.Wav2Letter` with torchaudio's paddings and final ReLU (its
``log_softmax`` output equals ``log_softmax`` of our logits), and a directory holding a
Hugging Face ``transformers`` CTC checkpoint (``save_pretrained``: ``config.json``, the
weights, the tokenizer and feature-extractor files), which becomes an
:class:`~gradnap.asr.hf.HFCTCModel` (:mod:`gradnap.asr.hf`; needs the ``hf`` extra).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from gradnap.asr.config import ConvTransformerConfig
from gradnap.asr.model import CONFIGS, ModelConfig, Wav2Letter
from gradnap.asr.transformer import ConvTransformer
from gradnap.defaults import ALPHABET, BLANK_INDEX, FEATURES, PACKAGE_DATA, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_bytes

__all__ = [
    "save_model",
    "read_model_file",
    "load_model",
    "has_attention",
    "config_dict",
    "from_torchaudio_state_dict",
    "DEFAULT_MODEL",
    "SHIPPED_MODELS",
    "shipped_path",
    "MODEL_FORMAT",
]

log = logging.getLogger(__name__)

MODEL_FORMAT = "gradnap-wav2letter"
MODEL_FORMAT_VERSION = 1
#: The architectures of a gradnap checkpoint: its ``architecture`` key -> model class and
#: config class (a file without the key is a Wav2Letter).
ARCHITECTURES: dict[str, tuple[type, type]] = {
    "wav2letter": (Wav2Letter, ModelConfig),
    "conv-transformer": (ConvTransformer, ConvTransformerConfig),
}

#: The models shipped with gradnap, by the name ``load_model`` and ``--model`` accept: a
#: gradnap checkpoint file or a Hugging Face checkpoint directory under ``gradnap/data``
#: (each with its model card).
SHIPPED_MODELS: dict[str, Path] = {
    "default": PACKAGE_DATA / "default.pt",
    "transformer": PACKAGE_DATA / "transformer.pt",
}
#: The script that trains each shipped model (named in the error when one is missing).
TRAINING_SCRIPTS: dict[str, str] = {
    "default": "scripts/train_default.sh",
    "transformer": "scripts/train_embedded_transformer.sh",
}
#: The shipped default model.
DEFAULT_MODEL = SHIPPED_MODELS["default"]

#: torchaudio's Wav2Letter paddings (mfcc / power_spectrum input).
TORCHAUDIO_PADDINGS = (23, 3, 3, 3, 3, 3, 3, 3, 16, 0, 0)


def config_dict(config: Any) -> dict:
    """A config dataclass as a dict with its tuples as lists (as a model file or a saved
    run state holds it, so the two compare equal)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def _architecture(model: Any) -> str:
    """The ``architecture`` key of a model's checkpoint."""
    for key, (cls, _) in ARCHITECTURES.items():
        if isinstance(model, cls):
            return key
    raise GradnapError(
        f"a {type(model).__name__} cannot be saved as a gradnap checkpoint "
        f"(architectures: {', '.join(ARCHITECTURES)})"
    )


def _config_from_dict(
    d: dict, where: str, config_class: type = ModelConfig
) -> ModelConfig | ConvTransformerConfig:
    names = {f.name for f in fields(config_class)}
    unknown = set(d) - names
    if unknown:
        raise GradnapError(f"{where}: unknown model config fields {sorted(unknown)}")
    try:
        kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return config_class(**kw)
    except TypeError as exc:
        raise GradnapError(f"{where}: bad model config ({exc})") from None


def _features_from_dict(d: dict, where: str) -> FeatureConfig:
    names = {f.name for f in fields(FeatureConfig)}
    unknown = set(d) - names
    if unknown:
        raise GradnapError(f"{where}: unknown feature settings {sorted(unknown)}")
    return FeatureConfig(**d)


def model_file_bytes(
    model: Wav2Letter | ConvTransformer,
    metadata: dict | None = None,
    features: FeatureConfig | None = None,
    dtype: torch.dtype = torch.float32,
    extra: dict | None = None,
) -> bytes:
    """Serialised checkpoint of ``model`` (see the module docstring)."""
    if dtype not in (torch.float32, torch.float16):
        raise GradnapError(f"checkpoint dtype must be float32 or float16, not {dtype}")
    features = features if features is not None else getattr(model, "features", FEATURES)
    state = {k: v.detach().to("cpu", dtype).clone() for k, v in model.state_dict().items()}
    blob = {
        "format": MODEL_FORMAT,
        "version": MODEL_FORMAT_VERSION,
        "architecture": _architecture(model),
        "config": config_dict(model.config),
        "alphabet": list(ALPHABET),
        "blank_index": BLANK_INDEX,
        "features": asdict(features),
        "state_dict": state,
        "dtype": str(dtype).removeprefix("torch."),
        "metadata": dict(metadata if metadata is not None else getattr(model, "metadata", {})),
    }
    if extra:
        blob.update(extra)
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def save_model(
    path: str | Path,
    model: Wav2Letter | ConvTransformer,
    metadata: dict | None = None,
    features: FeatureConfig | None = None,
    dtype: torch.dtype = torch.float32,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` to ``path`` atomically; returns the path.

    ``dtype=torch.float16`` halves the file; ``extra`` adds entries (e.g. optimizer state
    for resuming training) that :func:`load_model` ignores.
    """
    path = Path(path)
    atomic_write_bytes(path, model_file_bytes(model, metadata, features, dtype, extra))
    return path


def shipped_path(path: str | Path) -> Path:
    """The file or directory of a shipped model's name (:data:`SHIPPED_MODELS`), else
    ``path`` itself."""
    name = str(path)
    if name not in SHIPPED_MODELS:
        return Path(path)
    shipped = SHIPPED_MODELS[name]
    if not shipped.exists():
        raise GradnapError(
            f"{shipped}: the shipped {name!r} model is missing from this installation "
            f"(train it with {TRAINING_SCRIPTS[name]})"
        )
    return shipped


def has_attention(path: str | Path) -> bool:
    """Whether the model at ``path`` (or of a shipped name) has attention: a Hugging Face
    checkpoint directory or a gradnap checkpoint of a ``conv-transformer``; ``False``
    for anything else, unreadable files included (loading them says what is wrong)."""
    from gradnap.asr.hf import is_hf_checkpoint

    try:
        path = shipped_path(path)
        if is_hf_checkpoint(path):
            return True
        return read_model_file(path).get("architecture") == "conv-transformer"
    except GradnapError:
        return False


def _resolve(path: str | Path) -> Path:
    path = shipped_path(path)
    if path.is_dir():
        raise GradnapError(
            f"{path}: is a directory, not a model file (nor a Hugging Face checkpoint "
            "directory: it has no config.json)"
        )
    if not path.is_file():
        raise GradnapError(f"{path}: model file not found")
    return path


def _not_a_checkpoint(path: Path, exc: Exception) -> GradnapError:
    """Why ``torch.load`` could not read ``path``, in words."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return GradnapError(f"{path}: empty file, not a model checkpoint")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            names = None
        if names is None:
            return GradnapError(
                f"{path}: truncated or corrupt checkpoint (an interrupted copy or write?)"
            )
        if "meta.npy" in names:
            return GradnapError(f"{path}: a gradnap result file (.npz), not a model checkpoint")
    return GradnapError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})")


def read_model_file(path: str | Path) -> dict:
    """The raw dict stored in a checkpoint file (or ``"default"``)."""
    path = _resolve(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _not_a_checkpoint(path, exc) from None
    if not isinstance(blob, dict):
        raise GradnapError(f"{path}: not a checkpoint (holds a {type(blob).__name__}, not a dict)")
    return blob


def load_model(
    path: str | Path,
    features: FeatureConfig | None = None,
    config: str | ModelConfig | None = None,
) -> Any:
    """Load a model in eval mode from a checkpoint file, the name of a shipped model
    (``"default"``: :data:`SHIPPED_MODELS`), a state dict file, or a
    Hugging Face checkpoint directory.

    * gradnap checkpoints: the alphabet must be gradnap's and, when ``features`` is
      given, the stored feature settings must equal it.
    * a bare :class:`Wav2Letter` state dict (``layer1.conv.weight`` ...): widths come from
      the weights; ``config`` gives kernels/strides/paddings when not the defaults.
    * a torchaudio ``Wav2Letter`` state dict (``acoustic_model.0.weight`` ...).
    * a directory with a ``transformers`` ``*ForCTC`` checkpoint (wav2vec 2.0, HuBERT,
      WavLM ...): an :class:`~gradnap.asr.hf.HFCTCModel` (waveform input; local files
      only, :func:`gradnap.asr.hf.load_hf_model`).

    Anything else raises :class:`GradnapError` naming the file.
    """
    from gradnap.asr.hf import is_hf_checkpoint, load_hf_model

    model: Any
    path = shipped_path(path)
    if is_hf_checkpoint(path):
        model, where = load_hf_model(path), str(path)
    else:
        resolved = _resolve(path)
        model, where = _load_file(resolved, config), str(resolved)
    if features is not None and model.features != features:
        raise GradnapError(
            f"{where}: the model was trained on features {asdict(model.features)}, "
            f"not the requested {asdict(features)}"
        )
    model.eval()
    return model


def _load_file(path: Path, config: str | ModelConfig | None) -> Wav2Letter | ConvTransformer:
    """The model of a checkpoint or state dict file (see :func:`load_model`)."""
    blob = read_model_file(path)
    where = str(path)
    if blob.get("format") == MODEL_FORMAT:
        model = _from_checkpoint(blob, where)
    elif "state_dict" in blob and isinstance(blob["state_dict"], dict) and "format" not in blob:
        model = from_state_dict(blob["state_dict"], where, config)
    elif all(isinstance(v, torch.Tensor) for v in blob.values()) and blob:
        model = from_state_dict(blob, where, config)
    else:
        raise GradnapError(
            f"{where}: not a gradnap checkpoint (no 'format': {MODEL_FORMAT!r}) "
            "and not a Wav2Letter state dict"
        )
    return model


def _from_checkpoint(blob: dict, where: str) -> Wav2Letter | ConvTransformer:
    version = blob.get("version")
    if version != MODEL_FORMAT_VERSION:
        raise GradnapError(
            f"{where}: checkpoint version {version} (this gradnap reads {MODEL_FORMAT_VERSION})"
        )
    alphabet = tuple(blob.get("alphabet", ()))
    if alphabet != ALPHABET or blob.get("blank_index") != BLANK_INDEX:
        raise GradnapError(
            f"{where}: alphabet {''.join(alphabet)!r} (blank {blob.get('blank_index')}) differs "
            f"from gradnap's {''.join(ALPHABET)!r} (blank {BLANK_INDEX})"
        )
    arch = blob.get("architecture", "wav2letter")
    if arch not in ARCHITECTURES:
        raise GradnapError(
            f"{where}: unknown architecture {arch!r} (this gradnap reads "
            f"{', '.join(ARCHITECTURES)})"
        )
    model_class, config_class = ARCHITECTURES[arch]
    config = _config_from_dict(blob["config"], where, config_class)
    features = _features_from_dict(blob.get("features", {}), where)
    model = model_class(config)
    _load_state(model, blob["state_dict"], where)
    model.features = features
    model.metadata = dict(blob.get("metadata", {}))
    return model


def _load_state(model: Wav2Letter | ConvTransformer, state: dict, where: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise GradnapError(
            f"{where}: weights do not match the model (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]})"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise GradnapError(
                f"{where}: {k} has shape {tuple(v.shape)}, the config needs {tuple(own[k].shape)}"
            )
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})


_OURS = re.compile(r"^layer(\d+)\.conv\.(weight|bias)$")
_TORCHAUDIO = re.compile(r"^acoustic_model\.(\d+)\.(weight|bias)$")


def from_state_dict(
    state: dict, where: str = "state dict", config: str | ModelConfig | None = None
) -> Wav2Letter:
    """A :class:`Wav2Letter` from a bare state dict in gradnap's or torchaudio's layout.

    Widths are read from the weights; kernels must match ``config`` (default: the
    ``paper`` kernels and strides).
    """
    keys = list(state)
    if keys and all(_TORCHAUDIO.match(k) for k in keys):
        return from_torchaudio_state_dict(state, where)
    if not keys or not all(_OURS.match(k) for k in keys):
        bad = [k for k in keys if not (_OURS.match(k) or _TORCHAUDIO.match(k))][:3]
        hint = (
            " (torchaudio's waveform input type is not supported)"
            if any(k.startswith("acoustic_model.0.0.") for k in keys)
            else ""
        )
        raise GradnapError(f"{where}: not a Wav2Letter state dict (unexpected keys {bad}){hint}")
    n = max(int(_OURS.match(k).group(1)) for k in keys)  # type: ignore[union-attr]
    weights = [state.get(f"layer{i}.conv.weight") for i in range(1, n + 1)]
    if any(w is None for w in weights):
        raise GradnapError(f"{where}: layers are not numbered 1..{n}")
    base = (
        CONFIGS["paper"]
        if config is None
        else CONFIGS.get(config)
        if isinstance(config, str)
        else config
    )
    if base is None:
        raise GradnapError(f"unknown model config {config!r}; choose from {', '.join(CONFIGS)}")
    cfg = _config_for_weights(base, weights, where, name="state-dict")
    model = Wav2Letter(cfg)
    _load_state(model, state, where)
    return model


def _config_for_weights(
    base: ModelConfig, weights: list, where: str, name: str, **overrides: Any
) -> ModelConfig:
    kernels = tuple(int(w.shape[2]) for w in weights)
    if len(kernels) != len(base.kernels) or kernels != base.kernels:
        raise GradnapError(
            f"{where}: kernel sizes {kernels} differ from the Wav2Letter kernels {base.kernels}"
        )
    for i in range(1, len(weights)):
        if weights[i].shape[1] != weights[i - 1].shape[0]:
            raise GradnapError(
                f"{where}: layer {i + 1} takes {weights[i].shape[1]} channels, "
                f"layer {i} gives {weights[i - 1].shape[0]}"
            )
    channels = tuple(int(w.shape[0]) for w in weights)
    kw: dict[str, Any] = dict(
        name=name,
        channels=channels,
        kernels=kernels,
        strides=base.strides,
        n_features=int(weights[0].shape[1]),
        paddings=base.paddings,
        final_relu=base.final_relu,
    )
    kw.update(overrides)
    cfg = ModelConfig(**kw)
    if cfg.num_classes != len(ALPHABET) + 1:
        raise GradnapError(
            f"{where}: the model has {cfg.num_classes} output classes, gradnap's alphabet "
            f"needs {len(ALPHABET) + 1} (a-z, space, apostrophe, blank)"
        )
    return cfg


def from_torchaudio_state_dict(state: dict, where: str = "state dict") -> Wav2Letter:
    """The :class:`Wav2Letter` equivalent of torchaudio's ``Wav2Letter`` (mfcc /
    power-spectrum input) with this state dict.

    torchaudio's convolutions sit at ``acoustic_model.0, 2, ..., 20`` with symmetric
    paddings 23, 3, ..., 16, 0, 0 and a ReLU after every layer including the last;
    the result has ``paddings=TORCHAUDIO_PADDINGS`` and ``final_relu=True``, so
    ``log_softmax(model(x), 1)`` equals torchaudio's output exactly. Class ``k`` of the
    output is our class ``k`` (a-z, space, apostrophe, blank = 28).
    """
    idx = sorted({int(_TORCHAUDIO.match(k).group(1)) for k in state})  # type: ignore[union-attr]
    expected = list(range(0, 2 * len(TORCHAUDIO_PADDINGS), 2))
    if idx != expected:
        raise GradnapError(
            f"{where}: torchaudio Wav2Letter layers at acoustic_model.{idx}, expected {expected}"
        )
    weights = [state[f"acoustic_model.{i}.weight"] for i in idx]
    cfg = _config_for_weights(
        CONFIGS["paper"],
        weights,
        where,
        name="torchaudio",
        paddings=TORCHAUDIO_PADDINGS,
        final_relu=True,
    )
    model = Wav2Letter(cfg)
    mapped = {}
    for layer, i in enumerate(idx, 1):
        mapped[f"layer{layer}.conv.weight"] = state[f"acoustic_model.{i}.weight"]
        mapped[f"layer{layer}.conv.bias"] = state[f"acoustic_model.{i}.bias"]
    _load_state(model, mapped, where)
    return model
