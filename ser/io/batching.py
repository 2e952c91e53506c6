"""Network inputs from feature matrices with online i-vectors: the one batching layer of the
chain egs, alignment, decoding and the emotion stages.

Kaldi builds every network input the same way (``src/nnet3/nnet-example-utils.cc``,
``ExtractRowRangeWithPadding``; ``src/nnet3/decodable-simple-looped.cc``): the frames
``first - left_context ... first + chunk + right_context - 1`` of one utterance, indexes
outside the utterance clamped to its first/last frame (edge padding by repetition), and the
i-vector either as one row per chunk (``nnet3-chain-get-egs``: the row of a random frame of
the chunk; decoding: the row of the chunk's middle frame, ``GetCurrentIvector``) or, in
online decoding, the row ``t // ivector_period`` of every frame.

* :class:`MatrixTable`: the matrices of many utterances in one float32 tensor;
* :class:`LazyMatrixTable`: the same interface over matrices left where they are (an ark at the
  scp's offsets, or the bytes of an egs shard), each read and decoded when asked for: what every
  reader of a whole set uses, so no process holds a corpus (:func:`model_inputs` takes the
  utterances of one minibatch into memory);
* :class:`FeatureSet` / :func:`load_features`: a data dir's features and i-vectors;
* :func:`gather_frames`, :func:`ivectors_per_frame`, :func:`ivector_per_chunk`,
  :func:`pad_edges`: the pieces;
* :func:`model_inputs`: ``(x [B, T_in, F], ivector)`` with the model's full context, for
  whole utterances or chunks.

Frame convention (ser.nnet.TdnnfModel): ``T_out`` output frames at frame-subsampling factor
``fsf`` need ``T_in = fsf * T_out + left_context + right_context`` input frames; output ``k``
sits at input frame ``first + fsf * k``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ser.io.tables import (MATRIX_HEAD_BYTES, TableError, decode_matrix, encode_matrix, matrix_header,
                           read_matrix, read_scp)
from ser.progress import progress

log = logging.getLogger(__name__)

__all__ = ["MatrixTable", "LazyMatrixTable", "TableRows", "matrix_blob", "FeatureSet", "load_features", "ModelContext", "gather_frames",
           "ivectors_per_frame", "ivector_per_chunk", "pad_edges", "model_inputs"]


# ------------------------------------------------------------------------------------------
# storage
# ------------------------------------------------------------------------------------------
@dataclass
class MatrixTable:
    """Matrices of many utterances in one float32 tensor: rows of ``keys[i]`` are
    ``data[offsets[i]:offsets[i+1]]``."""

    keys: list[str]
    data: torch.Tensor  # float32 [N, D]
    offsets: torch.Tensor  # int64 [U + 1]
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {k: i for i, k in enumerate(self.keys)}
        if self.offsets.numel() != len(self.keys) + 1:
            raise ValueError("MatrixTable: offsets must have len(keys) + 1 entries")

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def num_rows(self, key: str) -> int:
        i = self.index[key]
        return int(self.offsets[i + 1] - self.offsets[i])

    def __getitem__(self, key: str) -> torch.Tensor:
        i = self.index[key]
        return self.data[int(self.offsets[i]):int(self.offsets[i + 1])]

    def __contains__(self, key: str) -> bool:
        return key in self.index

    @classmethod
    def from_scp(cls, scp: str | os.PathLike, keys: Sequence[str] | None = None,
                 desc: str = "reading") -> "MatrixTable":
        """Read the matrices of ``keys`` (default: all, in scp order).  Reads each ark file in
        offset order; one copy into the preallocated result per utterance."""
        table = read_scp(scp)
        keys = list(table) if keys is None else list(keys)
        missing = [k for k in keys if k not in table]
        if missing:
            raise ValueError(f"{scp}: no entry for utterance {missing[0]!r} ({len(missing)} missing)")
        order = sorted(range(len(keys)), key=lambda i: _ark_sort_key(table[keys[i]]))
        mats: list[np.ndarray | None] = [None] * len(keys)
        for i in progress(order, desc=desc, disable=len(keys) < 500, leave=False):
            m = read_matrix(table[keys[i]])
            if m.ndim != 2 or m.shape[0] == 0:
                raise ValueError(f"{scp}: utterance {keys[i]!r} has an empty or non-matrix entry")
            mats[i] = m
        return cls.from_arrays(keys, mats)  # type: ignore[arg-type]

    @classmethod
    def from_arrays(cls, keys: Sequence[str], mats: Sequence[np.ndarray | torch.Tensor]) -> "MatrixTable":
        if len(keys) != len(mats):
            raise ValueError("MatrixTable: keys and matrices differ in number")
        dims = {int(m.shape[1]) for m in mats}
        if len(dims) > 1:
            raise ValueError(f"MatrixTable: matrices of different dims {sorted(dims)}")
        lens = torch.tensor([int(m.shape[0]) for m in mats], dtype=torch.int64)
        offsets = torch.zeros(len(keys) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(lens, 0)
        data = torch.empty(int(offsets[-1]), dims.pop() if dims else 0, dtype=torch.float32)
        view = data.numpy()
        for i, m in enumerate(mats):
            view[int(offsets[i]):int(offsets[i + 1])] = m.numpy() if isinstance(m, torch.Tensor) else m
        return cls(list(keys), data, offsets)


class LazyMatrixTable:
    """The matrices of ``keys`` where they are stored, read one at a time: ``table[key]`` reads the
    entry's bytes (``os.pread`` on an ark kept open, or a slice of a memory-mapped shard tensor) and
    decodes them (:func:`ser.io.tables.decode_matrix`: a compressed matrix is decompressed here, per
    utterance), giving exactly the float32 matrix :meth:`MatrixTable.from_scp` holds for it.  Only the
    index is resident: per key its source, byte offset and size, and its number of rows (read from the
    matrix header when the table is made: one small read per utterance, no data).

    ``pread`` rather than ``mmap`` for arks: the pages read stay in the kernel's cache but are not mapped
    into the process, so its resident set does not grow with the corpus over an epoch.  Entries that are
    not binary matrices at an offset (a text ark, a ``cmd |`` pipe) fall back to
    :func:`ser.io.tables.read_matrix` on every access."""

    def __init__(self, keys: Sequence[str], sources: Sequence[str | torch.Tensor], source: np.ndarray,
                 start: np.ndarray, size: np.ndarray, rows: np.ndarray, dim: int, what: str,
                 fallback: dict[int, str] | None = None) -> None:
        self.keys = list(keys)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.sources = list(sources)
        self.source, self.start, self.size = source, start, size
        self.lengths = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        self._dim, self.what = int(dim), what
        self.fallback = dict(fallback or {})  # index -> rxspecifier read with read_matrix
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    # --- made from an scp or from a byte blob -----------------------------------------------------
    @classmethod
    def from_scp(cls, scp: str | os.PathLike, keys: Sequence[str] | None = None) -> "LazyMatrixTable":
        """The entries of ``keys`` (default: all, in scp order) of ``scp``; reads each header only."""
        table = read_scp(scp)
        keys = list(table) if keys is None else list(keys)
        missing = [k for k in keys if k not in table]
        if missing:
            raise ValueError(f"{scp}: no entry for utterance {missing[0]!r} ({len(missing)} missing)")
        paths: dict[str, int] = {}
        n = len(keys)
        source, start, size, rows = (np.zeros(n, dtype=np.int64) for _ in range(4))
        fallback: dict[int, str] = {}
        dims: set[int] = set()
        fds: dict[str, int] = {}
        try:
            for i, k in enumerate(keys):
                rx = table[k]
                m = re.match(r"^(.*):(\d+)$", rx)
                head = None
                if m and (m.group(1) in fds or os.path.isfile(m.group(1))):
                    path, off = m.group(1), int(m.group(2))
                    if path not in fds:
                        fds[path] = os.open(path, os.O_RDONLY)
                    head = matrix_header(os.pread(fds[path], MATRIX_HEAD_BYTES, off), f"{scp}: {k} ({rx})")
                if head is None:  # not a binary matrix at an offset: read it whole, now and when asked for
                    mat = read_matrix(rx, key=k)
                    fallback[i], r, c = rx, mat.shape[0], (mat.shape[1] if mat.ndim == 2 else 0)
                else:
                    source[i], start[i], size[i] = paths.setdefault(os.path.abspath(path), len(paths)), off, head[3]
                    r, c = head[1], head[2]
                if r == 0 or c == 0:
                    raise ValueError(f"{scp}: utterance {k!r} has an empty or non-matrix entry")
                rows[i] = r
                dims.add(c)
        finally:
            for fd in fds.values():
                os.close(fd)
        if len(dims) > 1:
            raise ValueError(f"{scp}: matrices of different dims {sorted(dims)}")
        return cls(keys, list(paths), source, start, size, rows, dims.pop() if dims else 0, str(scp), fallback)

    @classmethod
    def from_blob(cls, keys: Sequence[str], blob: torch.Tensor, offsets: torch.Tensor,
                  what: str) -> "LazyMatrixTable":
        """Entry ``i`` is ``blob[offsets[i]:offsets[i + 1]]`` (uint8, e.g. memory-mapped from a shard),
        the bytes of one binary Kaldi matrix (:func:`matrix_blob` wrote them)."""
        n = len(keys)
        if offsets.numel() != n + 1:
            raise ValueError(f"{what}: offsets must have len(keys) + 1 entries")
        off = offsets.numpy().astype(np.int64)
        view = blob.numpy()
        rows = np.zeros(n, dtype=np.int64)
        dims: set[int] = set()
        for i, k in enumerate(keys):
            head = matrix_header(view[off[i]:off[i] + MATRIX_HEAD_BYTES], f"{what}: {k}")
            if head is None or head[3] != off[i + 1] - off[i]:
                raise TableError(f"{what}: {k}: not one binary matrix of {off[i + 1] - off[i]} bytes")
            rows[i] = head[1]
            dims.add(head[2])
        if len(dims) > 1:
            raise ValueError(f"{what}: matrices of different dims {sorted(dims)}")
        return cls(keys, [blob], np.zeros(n, dtype=np.int64), off[:-1].copy(), off[1:] - off[:-1], rows,
                   dims.pop() if dims else 0, what)

    # --- MatrixTable's interface ------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def num_rows(self, key: str) -> int:
        return int(self.lengths[self.index[key]])

    def raw(self, key: str) -> bytes | np.ndarray:
        """The stored bytes of ``key``'s matrix (``"\\0B"`` to its end; an FM encoding for a fallback)."""
        i = self.index[key]
        if i in self.fallback:
            return encode_matrix(read_matrix(self.fallback[i], key=key))
        src = self.sources[int(self.source[i])]
        a, n = int(self.start[i]), int(self.size[i])
        if isinstance(src, torch.Tensor):
            return src.numpy()[a:a + n]
        data = os.pread(self._fd(int(self.source[i])), n, a)
        if len(data) != n:
            raise TableError(f"{src}: {key}: truncated at byte {a} ({len(data)} of {n} bytes)")
        return data

    def __getitem__(self, key: str) -> torch.Tensor:
        i = self.index[key]
        if i in self.fallback:
            return torch.from_numpy(np.array(read_matrix(self.fallback[i], key=key)))  # writable
        where = self.sources[int(self.source[i])]
        return torch.from_numpy(decode_matrix(self.raw(key), f"{self.what}: utterance {key} "
                                                             f"({where if isinstance(where, str) else 'blob'})"))

    def subset(self, keys: Sequence[str]) -> "LazyMatrixTable":
        idx = np.array([self.index[k] for k in keys], dtype=np.int64)
        fb = {j: self.fallback[int(i)] for j, i in enumerate(idx) if int(i) in self.fallback}
        return LazyMatrixTable(keys, self.sources, self.source[idx], self.start[idx], self.size[idx],
                               self.lengths.numpy()[idx], self.dim, self.what, fb)

    @classmethod
    def concat(cls, tables: Sequence["LazyMatrixTable"]) -> "LazyMatrixTable":
        """The entries of ``tables`` one after another (their keys must differ)."""
        keys = [k for t in tables for k in t.keys]
        if len(set(keys)) != len(keys):
            raise ValueError("LazyMatrixTable.concat: a key is in more than one table")
        dims = {t.dim for t in tables if len(t)}
        if len(dims) > 1:
            raise ValueError(f"LazyMatrixTable.concat: matrices of different dims {sorted(dims)}")
        sources: list = []
        parts, fallback, base = [], {}, 0
        for t in tables:
            remap = np.zeros(max(len(t.sources), 1), dtype=np.int64)
            for j, src in enumerate(t.sources):
                hit = [i for i, s in enumerate(sources) if s is src or (isinstance(s, str) and s == src)]
                remap[j] = hit[0] if hit else len(sources)
                if not hit:
                    sources.append(src)
            parts.append(remap[t.source] if len(t) else t.source)
            fallback.update({base + i: rx for i, rx in t.fallback.items()})
            base += len(t)
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
        return cls(keys, sources, cat(parts), cat([t.start for t in tables]), cat([t.size for t in tables]),
                   cat([t.lengths.numpy() for t in tables]), dims.pop() if dims else 0,
                   "+".join(t.what for t in tables), fallback)

    def materialize(self, keys: Sequence[str]) -> MatrixTable:
        """The matrices of ``keys`` in memory (one minibatch's utterances)."""
        return MatrixTable.from_arrays(keys, [self[k] for k in keys]) if keys else \
            MatrixTable([], torch.zeros(0, self.dim), torch.zeros(1, dtype=torch.int64))

    def _fd(self, s: int) -> int:
        with self._lock:
            fd = self._fds.get(s)
            if fd is None:
                fd = self._fds[s] = os.open(self.sources[s], os.O_RDONLY)
            return fd

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __getstate__(self) -> dict:  # a copy in another process opens its own files
        d = dict(self.__dict__)
        d["_fds"], d["_lock"] = {}, None
        return d

    def __setstate__(self, d: dict) -> None:
        self.__dict__.update(d)
        self._lock = threading.Lock()


Table = MatrixTable | LazyMatrixTable


class TableRows(Sequence):
    """The matrices of ``keys`` of a table as a read-only sequence of tensors, read when indexed or
    iterated (a lazy table reads from disk each time): a list's interface over data left on disk."""

    def __init__(self, table: Table, keys: Sequence[str]) -> None:
        missing = [k for k in keys if k not in table]
        if missing:
            raise KeyError(f"no matrix for {missing[0]!r} ({len(missing)} missing)")
        self.table, self.keys = table, list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return TableRows(self.table, self.keys[i])
        return self.table[self.keys[i]]

    def __iter__(self):
        return (self.table[k] for k in self.keys)


def matrix_blob(table: Table, keys: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 bytes, int64 offsets [U + 1]): the binary Kaldi matrices of ``keys`` one after another, as
    stored (a lazy table's entries keep their compression: no re-encoding, so reading them back gives
    the same floats; an in-memory matrix is written as FM, losslessly); :meth:`LazyMatrixTable.from_blob`
    reads them.  Sizes first, then one entry at a time into the preallocated result."""
    def part(k: str) -> bytes | np.ndarray:
        return table.raw(k) if isinstance(table, LazyMatrixTable) else encode_matrix(table[k].numpy())

    def size(k: str) -> int:
        if isinstance(table, LazyMatrixTable) and table.index[k] not in table.fallback:
            return int(table.size[table.index[k]])
        return 15 + table.num_rows(k) * table.dim * 4  # encode_matrix: "\\0BFM " and two "\\4" int32

    offsets = torch.zeros(len(keys) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor([size(k) for k in keys], dtype=torch.int64), 0)
    blob = torch.empty(int(offsets[-1]), dtype=torch.uint8)
    view = blob.numpy()
    for i, k in enumerate(keys):
        p = np.frombuffer(part(k), dtype=np.uint8)
        if len(p) != int(offsets[i + 1] - offsets[i]):
            raise TableError(f"{k}: {len(p)} bytes, its header says {int(offsets[i + 1] - offsets[i])}")
        view[int(offsets[i]):int(offsets[i + 1])] = p
    return blob, offsets


def _ark_sort_key(rx: str) -> tuple[str, int]:
    m = re.match(r"^(.*):(\d+)$", rx)
    return (m.group(1), int(m.group(2))) if m else (rx, 0)


@dataclass
class FeatureSet:
    """Features (and optional online i-vectors, one row per ``ivector_period`` frames) of the
    utterances of a data dir; ``utt2uniq`` from the data dir (perturbed copies of one source)."""

    feats: Table
    ivectors: Table | None = None
    ivector_period: int = 10
    utt2uniq: dict[str, str] = field(default_factory=dict)

    @property
    def utts(self) -> list[str]:
        return list(self.feats.keys)

    def num_frames(self, utt: str) -> int:
        return self.feats.num_rows(utt)

    def utt_index(self, utts: Sequence[str] | torch.Tensor) -> torch.Tensor:
        """int64 row indexes of ``utts`` (keys, or already indexes) in the tables."""
        if isinstance(utts, torch.Tensor):
            return utts.to(torch.int64)
        missing = [u for u in utts if u not in self.feats]
        if missing:
            raise ValueError(f"no features for utterance {missing[0]!r} ({len(missing)} missing)")
        return torch.tensor([self.feats.index[u] for u in utts], dtype=torch.int64)

    @property
    def lazy(self) -> bool:
        return isinstance(self.feats, LazyMatrixTable) or isinstance(self.ivectors, LazyMatrixTable)

    def take(self, utt_idx: torch.Tensor) -> tuple["FeatureSet", torch.Tensor]:
        """(the utterances ``utt_idx`` in memory, their rows in it): a lazy set's minibatch."""
        uniq, inverse = torch.unique(utt_idx, sorted=True, return_inverse=True)
        keys = [self.feats.keys[int(i)] for i in uniq]

        def mem(t: Table | None) -> MatrixTable | None:
            if t is None:
                return None
            return t.materialize(keys) if isinstance(t, LazyMatrixTable) else MatrixTable.from_arrays(keys, [t[k] for k in keys])
        return FeatureSet(mem(self.feats), mem(self.ivectors), self.ivector_period, self.utt2uniq), inverse


def load_features(data_dir: str | os.PathLike, ivector_dir: str | os.PathLike | None = None,
                  utts: Sequence[str] | None = None, *, ivector_period: int | None = None,
                  length_tolerance: int = 100, lazy: bool = False) -> FeatureSet:
    """Load ``<data_dir>/feats.scp`` (and ``<ivector_dir>/ivector_online.scp``, period from
    ``<ivector_dir>/ivector_period`` if present, else 10) for ``utts`` (default: all).
    Utterances whose i-vector matrix is missing or whose length disagrees with the features by
    more than ``length_tolerance`` frames (Kaldi's --length-tolerance) are dropped with a warning.
    ``lazy``: :class:`LazyMatrixTable` s (matrices read when a minibatch needs them), the same values."""
    from ser.io.datadir import DataDir

    d = DataDir.load(data_dir, validate=False)
    if not d.feats:
        raise ValueError(f"{data_dir}: no feats.scp")
    keys = sorted(d.feats) if utts is None else list(utts)
    period = 10 if ivector_period is None else int(ivector_period)
    if ivector_dir is not None:
        idir = Path(ivector_dir)
        scp = idir / "ivector_online.scp"
        if not scp.is_file():
            raise ValueError(f"{idir}: no ivector_online.scp")
        if ivector_period is None and (idir / "ivector_period").is_file():
            period = int((idir / "ivector_period").read_text().split()[0])
        have = read_scp(scp)
        dropped = [k for k in keys if k not in have]
        if dropped:
            log.warning("%d utterances have no i-vectors in %s (e.g. %s); dropped", len(dropped), scp, dropped[0])
            keys = [k for k in keys if k in have]
    def read(scp: Path, desc: str) -> Table:
        return LazyMatrixTable.from_scp(scp, keys) if lazy else MatrixTable.from_scp(scp, keys, desc=desc)
    feats = read(Path(data_dir) / "feats.scp", "features")
    ivecs = None
    if ivector_dir is not None:
        ivecs = read(Path(ivector_dir) / "ivector_online.scp", "i-vectors")
        bad = [k for k in keys if abs(feats.num_rows(k) - ivecs.num_rows(k) * period) > length_tolerance]
        if bad:
            log.warning("%d utterances: feature and i-vector lengths differ by more than %d frames (e.g. %s); "
                        "dropped", len(bad), length_tolerance, bad[0])
            keep = [k for k in keys if k not in set(bad)]
            if lazy:
                feats, ivecs = feats.subset(keep), ivecs.subset(keep)
            else:
                feats = MatrixTable.from_arrays(keep, [feats[k] for k in keep])
                ivecs = MatrixTable.from_arrays(keep, [ivecs[k] for k in keep])
    utt2uniq = d.extra("utt2uniq") if d.has("utt2uniq") else {}
    return FeatureSet(feats, ivecs, period, dict(utt2uniq))


# ------------------------------------------------------------------------------------------
# the pieces
# ------------------------------------------------------------------------------------------
def _per_sequence(x: int | torch.Tensor, n: int) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.int64)
    return t.expand(n) if t.dim() == 0 else t


def gather_frames(table: MatrixTable, utt_idx: torch.Tensor, first_frame: int | torch.Tensor,
                  num_frames: int) -> torch.Tensor:
    """[B, num_frames, D]: rows ``first_frame[b] ... first_frame[b] + num_frames - 1`` of
    utterance ``utt_idx[b]``, each index clamped to the utterance (Kaldi's
    ExtractRowRangeWithPadding: a negative ``first_frame`` pads the left edge with the first
    frame, frames past the end repeat the last one)."""
    first = _per_sequence(first_frame, len(utt_idx))
    rel = torch.arange(num_frames, dtype=torch.int64)[None, :] + first[:, None]
    rel = torch.minimum(rel.clamp_min(0), (table.lengths[utt_idx] - 1)[:, None])
    rows = rel + table.offsets[utt_idx][:, None]
    return table.data.index_select(0, rows.reshape(-1)).view(len(utt_idx), num_frames, table.dim)


def ivectors_per_frame(fs: FeatureSet, utt_idx: torch.Tensor, first_frame: int | torch.Tensor,
                       num_frames: int) -> torch.Tensor:
    """[B, num_frames, I]: the online i-vector of each frame of :func:`gather_frames`' window,
    row ``t // ivector_period`` of the frame ``t`` clamped to the utterance (and the row to
    the matrix) -- the i-vector an online decoder has at that frame."""
    iv = fs.ivectors
    if iv is None:
        raise ValueError("ivectors_per_frame: the feature set has no i-vectors")
    first = _per_sequence(first_frame, len(utt_idx))
    t = torch.arange(num_frames, dtype=torch.int64)[None, :] + first[:, None]
    t = torch.minimum(t.clamp_min(0), (fs.feats.lengths[utt_idx] - 1)[:, None])
    rows = torch.minimum(t // fs.ivector_period, (iv.lengths[utt_idx] - 1)[:, None])
    rows = rows + iv.offsets[utt_idx][:, None]
    return iv.data.index_select(0, rows.reshape(-1)).view(len(utt_idx), num_frames, iv.dim)


def ivector_per_chunk(fs: FeatureSet, utt_idx: torch.Tensor, frame: int | torch.Tensor) -> torch.Tensor:
    """[B, I]: one i-vector per sequence, the row ``frame[b] / ivector_period`` (C++ division,
    truncating towards zero) clamped to the matrix -- nnet3-chain-get-egs and
    DecodableNnetSimple::GetCurrentIvector choose ``frame`` (a random frame of the chunk, the
    chunk's middle frame)."""
    iv = fs.ivectors
    if iv is None:
        raise ValueError("ivector_per_chunk: the feature set has no i-vectors")
    f = _per_sequence(frame, len(utt_idx))
    rows = torch.div(f, fs.ivector_period, rounding_mode="trunc")
    rows = torch.minimum(rows.clamp_min(0), iv.lengths[utt_idx] - 1)
    return iv.data.index_select(0, iv.offsets[utt_idx] + rows)


def pad_edges(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Repeat the first/last frame of x [B, T, D] ``left``/``right`` times (Kaldi's padding of
    utterance edges, ExtractRowRangeWithPadding)."""
    if left < 0 or right < 0:
        raise ValueError("pad_edges: negative padding")
    first = x[:, :1].expand(-1, left, -1)
    last = x[:, -1:].expand(-1, right, -1)
    return torch.cat([first, x, last], dim=1)


# ------------------------------------------------------------------------------------------
# the one call
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelContext:
    """What :func:`model_inputs` needs of a model (a TdnnfModel has the same attributes)."""

    left_context: int
    right_context: int
    frame_subsampling_factor: int = 3


def model_inputs(fs: FeatureSet, utts: Sequence[str] | torch.Tensor, model, first_frame: int | torch.Tensor = 0,
                 num_output_frames: int | None = None, ivector_mode: str = "frame",
                 ivector_frame: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x [B, T_in, F], ivector)`` for ``utts`` (keys or row indexes of ``fs``) with the full
    context of ``model`` (``left_context``, ``right_context``, ``frame_subsampling_factor``).

    Output frame ``k`` of sequence ``b`` sits at input frame ``first_frame[b] + fsf * k``;
    ``T_in = fsf * T_out + left + right`` with ``T_out = num_output_frames``, or, when it is
    None, the most output frames of any sequence up to its utterance's end (whole utterances:
    ``ceil(T / fsf)``; shorter ones are padded with their last frame).  ``ivector_mode``:
    ``"frame"``: [B, T_in, I], the online row of every input frame; ``"chunk"``: [B, I], the row
    of ``ivector_frame[b]`` (default: the middle of the sequence's frames, as Kaldi's decoder).
    ``ivector`` is None when ``fs`` has no i-vectors."""
    uidx = fs.utt_index(utts)
    if fs.lazy:  # read this minibatch's utterances (and only them) into memory
        fs, uidx = fs.take(uidx)
    lc, rc = int(model.left_context), int(model.right_context)
    fsf = int(model.frame_subsampling_factor)
    first = _per_sequence(first_frame, len(uidx))
    avail = fs.feats.lengths[uidx] - first  # frames from the first one to the utterance's end
    if num_output_frames is None:
        num_output_frames = int(((avail + fsf - 1) // fsf).max())
    t_in = fsf * num_output_frames + lc + rc
    x = gather_frames(fs.feats, uidx, first - lc, t_in)
    if fs.ivectors is None:
        return x, None
    if ivector_mode == "frame":
        return x, ivectors_per_frame(fs, uidx, first - lc, t_in)
    if ivector_mode == "chunk":
        if ivector_frame is None:
            ivector_frame = first + torch.clamp(avail, 1, fsf * num_output_frames) // 2
        return x, ivector_per_chunk(fs, uidx, ivector_frame)
    raise ValueError(f"model_inputs: ivector_mode must be 'frame' or 'chunk', got {ivector_mode!r}")
