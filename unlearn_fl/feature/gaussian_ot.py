"""Gaussian Wasserstein-2 barycenter and affine OT maps (docs/method.md §3).

Symmetric PSD roots use `numpy.linalg.eigh` with eigenvalues floored at
`reg` × the largest one, so near-singular covariances (collinear or constant
features) stay invertible.
"""

from __future__ import annotations

import numpy as np


def _eig(S: np.ndarray, reg: float) -> tuple[np.ndarray, np.ndarray]:
    w, V = np.linalg.eigh(0.5 * (S + S.T))
    floor = reg * max(float(w.max()), np.finfo(float).tiny)
    return np.maximum(w, floor), V


def psd_power(S: np.ndarray, power: float, reg: float = 0.0) -> np.ndarray:
    """S^power for symmetric PSD S (eigenvalues floored at reg × the largest)."""
    w, V = _eig(S, reg)
    return (V * w**power) @ V.T


def regularise(S: np.ndarray, reg: float) -> np.ndarray:
    """Symmetrised S with eigenvalues floored at reg × the largest (keeps S positive definite)."""
    return psd_power(S, 1.0, reg)


def barycenter_cov(
    covs: np.ndarray, weights: np.ndarray, tol: float = 1e-10, max_iter: int = 1000, reg: float = 1e-9
) -> tuple[np.ndarray, int, bool]:
    """Σ̄ solving Σ̄ = Σ_s p_s (Σ̄^{1/2} Σ_s Σ̄^{1/2})^{1/2} by the fixed-point iteration of docs/method.md §3.

    Σ ← Σ^{-1/2} (Σ_s p_s (Σ^{1/2} Σ_s Σ^{1/2})^{1/2})² Σ^{-1/2}, started at Σ_s p_s Σ_s, stopped when the
    relative Frobenius change drops below `tol`. Returns (Σ̄, iterations, converged).
    """
    S = np.einsum("s,sij->ij", weights, covs)
    for it in range(1, max_iter + 1):
        w, V = _eig(S, reg)
        root, inv_root = (V * np.sqrt(w)) @ V.T, (V / np.sqrt(w)) @ V.T
        M = sum(p * psd_power(root @ C @ root, 0.5) for p, C in zip(weights, covs))
        S_new = inv_root @ M @ M @ inv_root
        S_new = 0.5 * (S_new + S_new.T)
        change = np.linalg.norm(S_new - S) / max(np.linalg.norm(S), np.finfo(float).tiny)
        S = S_new
        if change < tol:
            return S, it, True
    return S, max_iter, False


def fixed_point_residual(bary: np.ndarray, covs: np.ndarray, weights: np.ndarray) -> float:
    """Relative Frobenius residual of Σ̄ = Σ_s p_s (Σ̄^{1/2} Σ_s Σ̄^{1/2})^{1/2}."""
    root = psd_power(bary, 0.5)
    rhs = sum(p * psd_power(root @ C @ root, 0.5) for p, C in zip(weights, covs))
    return float(np.linalg.norm(rhs - bary) / np.linalg.norm(bary))


def ot_map_matrix(cov_s: np.ndarray, bary: np.ndarray, reg: float = 1e-9) -> np.ndarray:
    """A_s = Σ_s^{-1/2} (Σ_s^{1/2} Σ̄ Σ_s^{1/2})^{1/2} Σ_s^{-1/2}: the OT map N(·, Σ_s) → N(·, Σ̄) is x ↦ A_s x."""
    w, V = _eig(cov_s, reg)
    root, inv_root = (V * np.sqrt(w)) @ V.T, (V / np.sqrt(w)) @ V.T
    A = inv_root @ psd_power(root @ bary @ root, 0.5) @ inv_root
    return 0.5 * (A + A.T)
