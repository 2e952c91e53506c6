"""Batched solve of many small symmetric positive-definite systems, A_b x_b = y_b, by blocked Cholesky.

Kaldi's GPU online i-vector code (``src/cudafeat/online-ivector-feature-cuda.cc``) solves its per-row
i-vector systems with cuSOLVER ``potrf``/``potrs``; the CPU code (``OnlineIvectorEstimationStats`` in
``src/ivector/ivector-extractor.cc``) uses conjugate gradient.  This module is the exact (direct) solve,
written so that almost all the work is batched GEMMs: a recursive 2×2 block Cholesky

    A = [[A11, A12], [A21, A22]] = L Lᵀ,  L = [[L11, 0], [L21, L22]],
    L21ᵀ = L11⁻¹ A12,   L22 L22ᵀ = A22 − L21 L21ᵀ,

down to leaves of at most ``leaf`` rows, where LAPACK's ``potrf`` runs and the leaf factor is inverted
explicitly (``trtri``-like, by a triangular solve against I), so that the triangular solves above and the
forward/back substitution are matrix products.  On CPU, LAPACK on a batch of 100×100 matrices is
dominated by per-matrix call overheads, copies and ``tril``; this form is about 2× faster there and runs
unchanged on CUDA.  Accuracy is that of a float Cholesky solve (the leaf inverses are of small,
well-conditioned triangular blocks of an SPD matrix).

The factorisation reads only the blocks of that recursion: leaves (full) and the upper off-diagonal
blocks A12, never A21.  :class:`BlockLayout` stores a symmetric matrix as exactly those blocks, one
after the other (``[A11 blocks, A12, A22 blocks]`` recursively), about n²/2 + n·leaf/2 numbers, like
Kaldi's ``SpMatrix`` packed storage but in the order the recursion reads it.  A caller that builds
many symmetric matrices as linear combinations (the i-vector precisions Σ_c γ_c U_c) builds them
directly in this layout and solves them with :func:`spd_solve_blocks`, with no unpacking.
"""

from __future__ import annotations

from typing import Union

import torch

# A symmetric matrix as its recursion blocks: a leaf (B, n, n), or (left, A12 (B, n1, n2), right).
Blocks = Union[torch.Tensor, tuple]
# A factor: a leaf L⁻¹ (B, n, n), or (left, L21ᵀ (B, n1, n2), right).
Factor = Union[torch.Tensor, tuple]


def _split_point(n: int) -> int:
    """Size of the leading block when an n×n block is split."""
    return (n + 1) // 2


def _split(A: torch.Tensor, leaf: int) -> Blocks:
    """The recursion blocks of a full (B, n, n) matrix, as views."""
    n = A.shape[-1]
    if n <= leaf:
        return A
    n1 = _split_point(n)
    return _split(A[:, :n1, :n1], leaf), A[:, :n1, n1:], _split(A[:, n1:, n1:], leaf)


def _leaves(t: Blocks) -> list[torch.Tensor]:
    """The stored blocks in storage order (leaves and A12 blocks)."""
    return [t] if isinstance(t, torch.Tensor) else [*_leaves(t[0]), t[1], *_leaves(t[2])]


def _leaf_flags(t: Blocks) -> list[bool]:
    """For each block of ``_leaves``, whether it is a (diagonal) leaf."""
    return [True] if isinstance(t, torch.Tensor) else [*_leaf_flags(t[0]), False, *_leaf_flags(t[2])]


class BlockLayout:
    """Storage of a symmetric n×n matrix as the blocks of the recursive factorisation (see module doc).

    ``index`` (size,): for each stored number, its flat position i·n + j in the full matrix, so
    ``full.reshape(..., n*n)[..., index]`` converts to this layout.
    """

    def __init__(self, n: int, leaf: int = 13):
        if n < 1 or leaf < 1:
            raise ValueError(f"BlockLayout: need n >= 1 and leaf >= 1, got n={n}, leaf={leaf}")
        self.n, self.leaf = n, leaf
        pos = _split(torch.arange(n * n).reshape(1, n, n), leaf)
        self._shapes = [tuple(b.shape[1:]) for b in _leaves(pos)]
        self._leaf_flags = _leaf_flags(pos)
        self.index = torch.cat([b.reshape(-1) for b in _leaves(pos)])
        self.size = int(self.index.numel())
        offs = torch.tensor([0] + [r * c for r, c in self._shapes]).cumsum(0).tolist()
        self._diag_slices = [slice(o, o + r * c, r + 1) for o, (r, c), is_leaf in
                             zip(offs, self._shapes, self._leaf_flags) if is_leaf]

    def add_diagonal_(self, flat: torch.Tensor, v: torch.Tensor) -> None:
        """flat[b] += v[b]·I in place, for a (B, size) tensor in this layout and v (B,)."""
        for sl in self._diag_slices:
            flat[:, sl] += v[:, None]

    def blocks(self, flat: torch.Tensor) -> Blocks:
        """Views of a (B, size) tensor in this layout as recursion blocks."""
        if flat.ndim != 2 or flat.shape[1] != self.size:
            raise ValueError(f"BlockLayout({self.n}, {self.leaf}): expected (B, {self.size}), got {tuple(flat.shape)}")
        views, off = [], 0
        for r, c in self._shapes:
            views.append(flat[:, off:off + r * c].unflatten(1, (r, c)))
            off += r * c
        it = iter(views)

        def build(n: int) -> Blocks:
            if n <= self.leaf:
                return next(it)
            n1 = _split_point(n)
            left = build(n1)
            return left, next(it), build(n - n1)
        out = build(self.n)
        del build  # the closure refers to itself: a cycle that kept ``flat`` alive until the cyclic GC ran
        return out


def _factor(A: Blocks, info: list[torch.Tensor]) -> Factor:
    if isinstance(A, torch.Tensor):
        L, inf = torch.linalg.cholesky_ex(A)
        info.append(inf)
        eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand_as(L)
        return torch.linalg.solve_triangular(L, eye, upper=False)
    left = _factor(A[0], info)
    L21T = _solve_lower(left, A[1])
    return left, L21T, _factor(_downdate(A[2], L21T), info)


def _downdate(A: Blocks, V: torch.Tensor) -> Blocks:
    """The blocks of A − VᵀV for V (B, k, n), computing only the blocks that are stored."""
    if isinstance(A, torch.Tensor):
        return torch.baddbmm(A, V.mT, V, alpha=-1)
    n1 = A[1].shape[1]
    V1, V2 = V[:, :, :n1], V[:, :, n1:]
    return _downdate(A[0], V1), torch.baddbmm(A[1], V1.mT, V2, alpha=-1), _downdate(A[2], V2)


def _solve_lower(f: Factor, B: torch.Tensor) -> torch.Tensor:
    """L⁻¹ B for a matrix right-hand side B (batch, n, k)."""
    if isinstance(f, torch.Tensor):
        return torch.bmm(f, B)
    left, L21T, right = f
    n1 = L21T.shape[1]
    Y1 = _solve_lower(left, B[:, :n1])
    Y2 = _solve_lower(right, torch.baddbmm(B[:, n1:], L21T.mT, Y1, alpha=-1))
    return torch.cat([Y1, Y2], 1)


def _forward_row(f: Factor, bT: torch.Tensor) -> torch.Tensor:
    """(L⁻¹ b)ᵀ (batch, 1, n) for row vectors bT = bᵀ (row form: batched GEMVs run as fast GEMMs)."""
    if isinstance(f, torch.Tensor):
        return torch.bmm(bT, f.mT)
    left, L21T, right = f
    n1 = L21T.shape[1]
    y1 = _forward_row(left, bT[:, :, :n1])
    return torch.cat([y1, _forward_row(right, torch.baddbmm(bT[:, :, n1:], y1, L21T, alpha=-1))], 2)


def _backward_row(f: Factor, yT: torch.Tensor) -> torch.Tensor:
    """(L⁻ᵀ y)ᵀ for row vectors yT."""
    if isinstance(f, torch.Tensor):
        return torch.bmm(yT, f)
    left, L21T, right = f
    n1 = L21T.shape[1]
    x2 = _backward_row(right, yT[:, :, n1:])
    return torch.cat([_backward_row(left, torch.baddbmm(yT[:, :, :n1], x2, L21T.mT, alpha=-1)), x2], 2)


def spd_solve_blocks(A: Blocks, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A_b x_b = y_b for SPD A given as recursion blocks (from ``_split`` or ``BlockLayout.blocks``).

    Returns (x (batch, n), ok (batch,) bool: False where a leaf ``potrf`` found A not positive definite,
    in which case that x is garbage).
    """
    info: list[torch.Tensor] = []
    f = _factor(A, info)
    ok = torch.stack(info).eq(0).all(0)
    return _backward_row(f, _forward_row(f, y[:, None, :]))[:, 0], ok


def spd_solve(A: torch.Tensor, y: torch.Tensor, leaf: int = 13) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve A_b x_b = y_b for SPD A (batch, n, n) (the upper triangle and the diagonal blocks are read),
    y (batch, n).  Returns (x, ok) as :func:`spd_solve_blocks`."""
    if A.ndim != 3 or A.shape[1] != A.shape[2] or y.shape != A.shape[:2]:
        raise ValueError(f"spd_solve: bad shapes A {tuple(A.shape)}, y {tuple(y.shape)}")
    if leaf < 1:
        raise ValueError(f"spd_solve: leaf must be >= 1, got {leaf}")
    return spd_solve_blocks(_split(A, leaf), y)
