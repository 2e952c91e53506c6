"""ser: a Kaldi-style recipe toolkit for speech emotion recognition by transfer from ASR."""

__version__ = "0.1.0"
