"""The demo's ASR model, a separate product from the GradNAP method: the Wav2Letter
architecture, model files, CTC training, decoding and evaluation."""

from gradnap.asr.model import CONFIGS, ModelConfig, Wav2Letter, build_model
from gradnap.asr.modelfile import load_model, save_model

__all__ = ["CONFIGS", "ModelConfig", "Wav2Letter", "build_model", "load_model", "save_model"]
