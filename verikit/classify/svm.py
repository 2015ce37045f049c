"""An SVM over embeddings for closed-set identification, stored without pickle.

scikit-learn fits it; only its fitted numbers are kept, in one ``.safetensors`` file (arrays) whose
metadata holds a JSON header (kernel, C, gamma, identity names, the model fingerprint, the fit
report). Prediction rebuilds the decision function from those numbers with numpy, so loading a
classifier someone sent you executes nothing of theirs (a pickled estimator would), needs no
scikit-learn, and does not depend on scikit-learn's private attribute layout staying the same.

* ``linear`` (``LinearSVC``, one-vs-rest): ``coef_``, ``intercept_``; the decision for each
  identity is ``x . w_k + b_k``. No training embedding is stored.
* ``rbf`` (``SVC``, one-vs-one): ``support_vectors_``, ``dual_coef_``, ``intercept_``,
  ``n_support_`` and gamma; one-vs-one decisions are combined into per-identity scores exactly as
  scikit-learn's ``decision_function_shape="ovr"`` does (votes plus a confidence term in
  (-1/3, 1/3)). The support vectors are training embeddings: the file is as sensitive as a gallery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import write_atomic
from ..errors import DataError, FingerprintMismatchError, ModelError, one_line
from ..schemas import validate
from .schema import FORMAT, FORMAT_VERSION, KERNELS, SvmFile

CLASSIFIER_FILE = "classifier.safetensors"


@dataclass
class SvmClassifier:
    """A fitted SVM's numbers; build with :meth:`fit`, or :meth:`load` a saved one."""

    kernel: str
    classes: list[str]
    arrays: dict[str, np.ndarray]
    C: float
    gamma: float | None = None
    model_fingerprint: str = ""
    report: dict[str, Any] = field(default_factory=dict)

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: Sequence[str], *, kernel: str = "linear", C: float = 1.0,
            model_fingerprint: str = "", seed: int = 0) -> "SvmClassifier":
        """Fit on (n, dim) embeddings with one identity name per row (at least two identities)."""
        if kernel not in KERNELS:
            raise DataError(f"unknown SVM kernel {kernel!r}; choose linear or rbf")
        if not C > 0:
            raise DataError(f"C must be positive, got {C}")
        x = np.asarray(embeddings, dtype=np.float64)
        y = np.asarray(list(labels))
        if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
            raise DataError(f"need (n, dim) embeddings and n labels, got {x.shape} and {len(y)}")
        if len(set(y.tolist())) < 2:
            raise DataError("an SVM needs at least two identities to tell apart")
        if kernel == "linear":
            from sklearn.svm import LinearSVC

            est = LinearSVC(C=C, random_state=seed, max_iter=20_000).fit(x, y)
            arrays = {"coef": est.coef_, "intercept": est.intercept_}
            return cls("linear", [str(c) for c in est.classes_], _f64(arrays), C, None, model_fingerprint)
        from sklearn.svm import SVC

        # gamma fixed here (scikit-learn's "scale" rule) so it is recorded, not recomputed differently later.
        gamma = 1.0 / (x.shape[1] * x.var()) if x.var() > 0 else 1.0
        est = SVC(kernel="rbf", C=C, gamma=gamma, decision_function_shape="ovr", break_ties=True).fit(x, y)
        arrays = {"support_vectors": est.support_vectors_, "dual_coef": est.dual_coef_,
                  "intercept": est.intercept_, "n_support": est.n_support_.astype(np.float64)}
        return cls("rbf", [str(c) for c in est.classes_], _f64(arrays), C, float(gamma), model_fingerprint)

    # -- prediction ------------------------------------------------------------------------------
    def decision_function(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, n_identities) scores; the predicted identity is the largest (ties: the first)."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        dim = self.arrays["coef" if self.kernel == "linear" else "support_vectors"].shape[1]
        if x.ndim != 2 or x.shape[1] != dim:
            raise DataError(f"classifier expects embeddings of size {dim}, got shape {x.shape}")
        if self.kernel == "linear":
            dec = x @ self.arrays["coef"].T + self.arrays["intercept"]
            return np.hstack([-dec, dec]) if len(self.classes) == 2 else dec  # binary: one hyperplane
        return self._ovr_from_ovo(self._ovo_decisions(x))

    def _ovo_decisions(self, x: np.ndarray) -> np.ndarray:
        """libsvm's one-vs-one decision values, pair (i, j) for i < j in order; > 0 favours i."""
        sv, coef, b = self.arrays["support_vectors"], self.arrays["dual_coef"], self.arrays["intercept"]
        counts = self.arrays["n_support"].astype(int)
        starts = np.concatenate([[0], np.cumsum(counts)])
        sq = (x * x).sum(1)[:, None] + (sv * sv).sum(1)[None, :] - 2 * x @ sv.T
        k = np.exp(-self.gamma * np.maximum(sq, 0.0))  # (n, n_sv)
        n_cls = len(self.classes)
        if n_cls == 2:  # scikit-learn stores the binary case sign-flipped (> 0 favours class 1)
            return -(k @ coef[0] + b[0])[:, None]
        out = []
        for p, (i, j) in enumerate((i, j) for i in range(n_cls) for j in range(i + 1, n_cls)):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            # dual_coef_ layout: class i's SVs against class j sit in row j-1, class j's against i in row i.
            out.append(k[:, si] @ coef[j - 1, si] + k[:, sj] @ coef[i, sj] + b[p])
        return np.stack(out, axis=1)

    def _ovr_from_ovo(self, dec: np.ndarray) -> np.ndarray:
        """Votes plus a bounded confidence per identity (scikit-learn's ovr aggregation)."""
        n_cls = len(self.classes)
        votes = np.zeros((len(dec), n_cls))
        conf = np.zeros((len(dec), n_cls))
        for p, (i, j) in enumerate((i, j) for i in range(n_cls) for j in range(i + 1, n_cls)):
            votes[:, i] += dec[:, p] >= 0  # scikit-learn counts a tie (0) for the first class
            votes[:, j] += dec[:, p] < 0
            conf[:, i] += dec[:, p]
            conf[:, j] -= dec[:, p]
        return votes + conf / (3 * (np.abs(conf) + 1))

    def predict(self, embeddings: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(identity per row, its score): the top of :meth:`decision_function`."""
        dec = self.decision_function(embeddings)
        best = dec.argmax(axis=1)
        return [self.classes[i] for i in best], dec[np.arange(len(dec)), best]

    # -- persistence -------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kernel": self.kernel, "C": self.C,
                "gamma": self.gamma, "classes": self.classes, "model_fingerprint": self.model_fingerprint,
                "report": self.report}

    def save(self, path: str | Path) -> Path:
        """Write one ``.safetensors`` file atomically (arrays + JSON header in its metadata)."""
        from safetensors.numpy import save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, save({k: np.ascontiguousarray(v) for k, v in self.arrays.items()},
                                       metadata={"verikit": json.dumps(self.header())}))

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None) -> "SvmClassifier":
        """Read a saved classifier; with ``fingerprint``, refuse one fitted on another model's embeddings."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if path.is_dir():
            path = path / CLASSIFIER_FILE
        if not path.is_file():
            raise ModelError(f"no classifier at '{path}' (fit one with `verikit classify fit`)")
        what = "classifier"
        try:
            with safe_open(str(path), framework="numpy") as f:
                raw_header = (f.metadata() or {}).get("verikit")
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, TypeError) as exc:
            raise ModelError(f"{what} '{path}' is unreadable or malformed: not a safetensors file ({one_line(exc)})") from exc
        if raw_header is None:
            raise ModelError(f"{what} '{path}' is not a verikit classifier (no 'verikit' header in its metadata)")
        try:
            header = json.loads(raw_header)
        except ValueError as exc:
            raise ModelError(f"{what} '{path}' is malformed: its header is not valid JSON ({one_line(exc)})") from exc
        if not isinstance(header, dict):
            raise ModelError(f"{what} '{path}' is malformed: its header should be a JSON object")
        doc = validate(SvmFile, {**header, "arrays": arrays}, str(path), error=ModelError, what=what)
        clf = cls(doc.kernel, list(doc.classes), dict(doc.arrays), doc.C, doc.gamma, doc.model_fingerprint,
                  dict(doc.report))
        if fingerprint is not None and clf.model_fingerprint != fingerprint:
            raise FingerprintMismatchError(
                f"classifier '{path}' was fitted on embeddings of model {clf.model_fingerprint[:12]}, not this model "
                f"({fingerprint[:12]}); run `verikit classify fit` with this model")
        return clf


def _f64(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
