"""The declared schema of a saved SVM classifier (``classifier.safetensors``).

The file holds arrays plus a JSON header in the safetensors metadata (see
:mod:`verikit.classify.svm`). Both are checked together on load (shared rules and one-line errors:
:mod:`verikit.schemas`): the header's fields and, for each kernel, that exactly the arrays its
decision function reads are present, finite, and of shapes that fit each other and the number of
identities. A file that passes cannot make prediction fail with an index or shape error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..schemas import FileSchema

FORMAT = "verikit.svm"
FORMAT_VERSION = 1
KERNELS = ("linear", "rbf")
ARRAYS = {"linear": ("coef", "intercept"), "rbf": ("support_vectors", "dual_coef", "intercept", "n_support")}
NDIM = {"coef": 2, "intercept": 1, "support_vectors": 2, "dual_coef": 2, "n_support": 1}


class SvmFile(FileSchema):
    """Header fields plus ``arrays`` (name -> numpy array, read with safetensors)."""

    format: Literal[FORMAT]
    format_version: Literal[FORMAT_VERSION]
    kernel: Literal[KERNELS]  # type: ignore[valid-type]
    C: Annotated[float, Field(gt=0.0)]
    gamma: Optional[Annotated[float, Field(gt=0.0)]] = None
    classes: Annotated[list[str], Field(min_length=2)]
    model_fingerprint: Annotated[str, Field(max_length=200)] = ""
    report: dict[str, Any] = {}
    arrays: dict[str, Any]

    @field_validator("classes")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must name each identity once")
        return value

    @field_validator("arrays")
    @classmethod
    def _numeric(cls, value: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, arr in value.items():
            if name not in NDIM:
                raise ValueError(f"holds an unknown array {name!r} (allowed: {', '.join(NDIM)})")
            a = np.asarray(arr)
            if a.ndim != NDIM[name] or a.dtype.kind != "f" or not np.isfinite(a).all():
                raise ValueError(f"array {name!r} must be a {NDIM[name]}-D array of finite floats, "
                                 f"got {a.ndim}-D {a.dtype}")
            out[name] = a.astype(np.float64)
        return out

    @model_validator(mode="after")
    def _fits(self) -> "SvmFile":
        a, k = self.arrays, len(self.classes)
        missing = [n for n in ARRAYS[self.kernel] if n not in a]
        extra = [n for n in a if n not in ARRAYS[self.kernel]]
        if missing or extra:
            raise ValueError(f"a {self.kernel} SVM holds exactly the arrays {', '.join(ARRAYS[self.kernel])}; "
                             f"missing {missing or 'none'}, unexpected {extra or 'none'}")
        if self.kernel == "linear":
            rows = 1 if k == 2 else k  # binary: one hyperplane
            if a["coef"].shape[0] != rows or a["intercept"].shape != (rows,) or a["coef"].shape[1] < 1:
                raise ValueError(f"a linear SVM over {k} identities needs coef ({rows}, dim) and intercept "
                                 f"({rows},), got {a['coef'].shape} and {a['intercept'].shape}")
            if self.gamma is not None:
                raise ValueError("a linear SVM has no gamma")
            return self
        if self.gamma is None:
            raise ValueError("an rbf SVM needs gamma")
        counts = a["n_support"]
        n_sv = a["support_vectors"].shape[0]
        if (counts.shape != (k,) or (counts < 0).any() or (counts != np.round(counts)).any()
                or int(counts.sum()) != n_sv):
            raise ValueError(f"n_support must count the support vectors of each of the {k} identities "
                             f"(whole numbers summing to {n_sv})")
        if a["dual_coef"].shape != (k - 1, n_sv) or a["intercept"].shape != (k * (k - 1) // 2,) \
                or a["support_vectors"].shape[1] < 1:
            raise ValueError(f"an rbf SVM over {k} identities needs dual_coef ({k - 1}, {n_sv}) and intercept "
                             f"({k * (k - 1) // 2},), got {a['dual_coef'].shape} and {a['intercept'].shape}")
        return self
