"""ser: a Kaldi-style recipe toolkit for speech emotion recognition by transfer from ASR."""

__version__ = "0.1.0"

__all__ = ["EmotionRecognizer"]


def __getattr__(name: str):
    """``from ser import EmotionRecognizer`` without importing torch on ``import ser``."""
    if name == "EmotionRecognizer":
        from ser.infer.recognizer import EmotionRecognizer

        return EmotionRecognizer
    raise AttributeError(f"module 'ser' has no attribute {name!r}")
