"""Synthetic galleries for the approximate-search benchmarks, and the statistics that compare them
with real face embeddings (used by ``bench_ann.py``, ``bench_ann_10m.py`` and ``bench_ann_data.py``).

Two kinds of data, both unit vectors:

* ``isotropic``: each template is a random direction near one of n/20 random centres drawn
  uniformly on the sphere (noise 0.7 per dimension). In 256 dimensions such data has no structure
  an index can use: a query's neighbours are spread over the whole space, so any partition or
  graph must visit most of it to find them. It is the hardest case, and not what a gallery holds.
* ``structured``: identities with several templates each, as a gallery holds them. Identity
  centres lie near a ``latent``-dimensional subspace (a random orthonormal basis; the variance of
  latent direction j falls as 1/j, the smooth spectrum learned embeddings have) plus a small
  isotropic part; each template is its identity's centre plus within-identity variation (pose,
  light) in the same subspace plus isotropic noise, normalised. The constants are set once, a
  priori, from what a verification embedding is for (templates of one person closer than those of
  two people); ``bench_ann_data.py`` then measures the statistics that govern approximate-search
  difficulty (PCA spectrum, local intrinsic dimension, relative contrast, identity purity of the
  nearest neighbours) on real face descriptors and on both synthetic kinds, and reports them.
"""

from __future__ import annotations

import numpy as np

LATENT = 32
TEMPLATES_PER_IDENTITY = 5
CENTRE_RESIDUAL = 0.15  # isotropic part of an identity centre, relative to its latent part
WITHIN = 0.45           # within-identity variation in the latent subspace, relative to the centres' spread
NOISE = 0.25            # isotropic noise per template, relative to the centres' spread
BLOCK = 100_000


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def isotropic(n: int, d: int, seed: int, centres: int | None = None) -> np.ndarray:
    """Unit vectors around ``centres`` (default n/20) random centres on the sphere, noise 0.7."""
    centres = centres or max(100, n // 20)
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(12345).standard_normal((centres, d), dtype=np.float32)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, BLOCK):
        m = min(BLOCK, n - s)
        out[s:s + m] = _unit(c[rng.integers(0, centres, m)] + 0.7 * rng.standard_normal((m, d), dtype=np.float32))
    return out


class Structured:
    """Identities near a low-dimensional subspace, several templates each (see the module docstring).

    ``templates(n, seed)`` draws n templates of the first n / ``per_identity`` identities (identity
    i's templates are rows i*per_identity ...); ``queries(n, seed)`` draws new templates of
    identities already in the gallery (a returning person, the usual 1:N search). The identity
    centres depend only on ``basis_seed``, so a gallery and its queries share identities."""

    def __init__(self, d: int, *, latent: int = LATENT, per_identity: int = TEMPLATES_PER_IDENTITY,
                 basis_seed: int = 12345) -> None:
        self.d, self.latent, self.per_identity, self.basis_seed = d, min(latent, d), per_identity, basis_seed
        rng = np.random.default_rng(basis_seed)
        self.basis = np.linalg.qr(rng.standard_normal((d, self.latent)))[0].T.astype(np.float32)  # (L, d)
        self.scale = (1.0 / np.sqrt(np.arange(1, self.latent + 1))).astype(np.float32)  # variance ~ 1/j
        self.scale /= np.sqrt(np.sum(self.scale ** 2))  # centres' latent part has unit expected norm

    def centres(self, ids: np.ndarray) -> np.ndarray:
        """The (unnormalised) centres of identities ``ids``: the same for the same id, whatever the call."""
        out = np.empty((len(ids), self.d), np.float32)
        blocks = ids // 4096  # a generator per identity would be slow: one per block of 4096 ids
        for b in np.unique(blocks):
            rng = np.random.default_rng([self.basis_seed, int(b)])
            z = rng.standard_normal((4096, self.latent), dtype=np.float32) * self.scale
            e = rng.standard_normal((4096, self.d), dtype=np.float32) * (CENTRE_RESIDUAL / np.sqrt(self.d))
            block = z @ self.basis + e
            rows = blocks == b
            out[rows] = block[ids[rows] % 4096]
        return out

    def _draw(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        m = len(ids)
        u = rng.standard_normal((m, self.latent), dtype=np.float32) * (self.scale * WITHIN)
        e = rng.standard_normal((m, self.d), dtype=np.float32) * (NOISE / np.sqrt(self.d))
        return _unit(self.centres(ids) + u @ self.basis + e)

    def templates(self, n: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.d), np.float32)
        for s in range(0, n, BLOCK):
            ids = np.arange(s, min(n, s + BLOCK)) // self.per_identity
            out[s:s + len(ids)] = self._draw(ids, rng)
        return out

    def identities_of(self, n: int) -> np.ndarray:
        return np.arange(n) // self.per_identity

    def queries(self, n: int, gallery_size: int, seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, max(1, gallery_size // self.per_identity), n)
        return self._draw(ids, rng)


def make(kind: str, n: int, d: int, seed: int = 0) -> np.ndarray:
    """``n`` gallery templates of ``kind`` (isotropic | structured)."""
    return isotropic(n, d, seed) if kind == "isotropic" else Structured(d).templates(n, seed)


def make_queries(kind: str, n: int, d: int, gallery_size: int, seed: int = 1) -> np.ndarray:
    """``n`` fresh queries (never in the gallery) for a gallery of ``gallery_size`` of ``kind``."""
    if kind == "isotropic":
        return isotropic(n, d, seed, centres=max(100, gallery_size // 20))
    return Structured(d).queries(n, gallery_size, seed)


# -- statistics of a set of unit vectors ------------------------------------------------------------
def structure_stats(x: np.ndarray, labels: np.ndarray | None = None, *, k: int = 20) -> dict:
    """What governs approximate-search difficulty, on unit vectors ``x`` (N, d):

    * ``pca_top{8,16,32,64}``: share of the variance (of the centred data) in the top components;
    * ``lid_median``: local intrinsic dimension, the maximum-likelihood estimate of Levina and
      Bickel (2004) from each point's k nearest neighbours (low: neighbourhoods are thin, easy);
    * ``relative_contrast``: median over points of (mean distance to all) / (distance to the
      nearest), He, Kumar and Chang (2012) (near 1: every point is about as far as the nearest one,
      no index can do better than a scan);
    * ``nn_same_identity``: with labels, the share of each point's 5 nearest that are its identity's.
    Distances are Euclidean; statistics depend on N, so compare sets of the same size."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    centred = x - x.mean(0)
    ev = np.linalg.svd(centred, compute_uv=False) ** 2
    ev = ev / ev.sum()
    out = {"n": n, "dim": d}
    out.update({f"pca_top{c}": round(float(ev[:c].sum()), 3) for c in (8, 16, 32, 64) if c <= d})
    dist = np.sqrt(np.maximum(2.0 - 2.0 * (x @ x.T), 0.0))
    np.fill_diagonal(dist, np.inf)
    knn = np.sort(dist, axis=1)[:, :k]
    knn = np.maximum(knn, 1e-12)
    lid = -1.0 / np.mean(np.log(knn[:, :-1] / knn[:, -1:]), axis=1)
    out["lid_median"] = round(float(np.median(lid)), 1)
    finite = np.where(np.isfinite(dist), dist, 0.0)
    out["relative_contrast"] = round(float(np.median(finite.sum(1) / (n - 1) / knn[:, 0])), 2)
    if labels is not None:
        labels = np.asarray(labels)
        nn5 = np.argsort(dist, axis=1)[:, :5]
        out["nn_same_identity"] = round(float(np.mean(labels[nn5] == labels[:, None])), 3)
        cos = x @ x.T
        same = labels[:, None] == labels[None, :]
        np.fill_diagonal(same, False)
        other = labels[:, None] != labels[None, :]
        out["cosine_same_identity_median"] = round(float(np.median(cos[same])), 3)
        out["cosine_other_identity_median"] = round(float(np.median(cos[other])), 3)
    return out
