"""Per-job programs run through $train_cmd (Kaldi src/*bin/ counterparts)."""
