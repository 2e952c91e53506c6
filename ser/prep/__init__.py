"""Stage 1: corpus → Kaldi data dirs (same code for the real and the embedded corpora)."""
