"""Data directories, Kaldi tables (ark/scp) and audio."""
