"""The programs: one module per program, ``main(argv) -> int`` run as ``python -m ser.bin.<name>`` by the
steps/, local/ and utils/ script of the same name (Kaldi's script or binary names); shared pieces in
:mod:`ser.cli`; the list is in the README (Programs).  Modules starting with ``_`` are not programs."""
