"""``verikit classify fit|predict``: an SVM over embeddings for closed-set identification."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import EXIT_PARTIAL, BatchOpt, DeviceOpt, FormatOpt, OutputFormat, QuietOpt, emit, progress_bar, warn

app = typer.Typer(help="Closed-set identification: an SVM on a model's embeddings (fit, predict).",
                  no_args_is_help=True)


class Kernel(str, Enum):
    linear = "linear"
    rbf = "rbf"


ModelReq = Annotated[Path, typer.Option("--model", "-m", envvar="VERIKIT_MODEL", help="Model directory.",
                                        show_default=False)]
ClassifierOpt = Annotated[Optional[Path], typer.Option(
    "--classifier", help="Classifier file. Default: MODEL/classifier.safetensors.", show_default=False)]


def fit(
    data_dir: Annotated[Path, typer.Argument(help="One sub-folder of images per identity.", show_default=False)],
    model: ModelReq,
    kernel: Annotated[Kernel, typer.Option(help="linear (LinearSVC, one-vs-rest) or rbf (SVC, one-vs-one).")]
    = Kernel.linear,
    c: Annotated[float, typer.Option("-C", "--C", min=1e-9,
                                     help="SVM regularisation: larger fits the training data harder.")]
    = 1.0,
    test_fraction: Annotated[float, typer.Option(min=0.0, max=0.95, help="Images of each identity held out to "
                                                 "measure accuracy (0: fit on all, no accuracy).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the per-identity split.")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Classifier file to write. "
                                                "Default: MODEL/classifier.safetensors.", show_default=False)] = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """Fit an SVM on embeddings and report its accuracy next to nearest neighbour.

    Each identity's images are split into train and --test-fraction test images; the SVM is fitted
    on the train images, and both it and 1-nearest-neighbour (the model's own similarity) are
    scored on the same test images. The fitted SVM is saved without pickle, bound to the model's
    fingerprint. For an honest figure, use identities the model was not trained on.

    Example: verikit classify fit data/people --model runs/m --kernel rbf -C 10
    """
    from ..classify.protocol import fit_folder
    from ..classify.svm import CLASSIFIER_FILE
    from ..io import scan_identity_folders
    from ..models.embedder import Embedder

    net = Embedder.load(model, device=device)
    total = len(scan_identity_folders(data_dir).items)
    with progress_bar(f"embedding {total} image(s)", total, quiet) as advance:
        clf, report = fit_folder(net, data_dir, kernel=kernel.value, C=c, test_fraction=test_fraction, seed=seed,
                                 batch_size=batch_size, progress=advance)
    for failure in report.failures:
        warn(f"skipped: {failure}")
    path = clf.save(out or Path(model) / CLASSIFIER_FILE)
    data = {**report.to_dict(), "classifier": str(path)}

    def pct(v: float | None) -> str:
        return "n/a (no test images)" if v is None else f"{v:.2%}"

    emit(data, fmt, f"{report.identities} identities, {report.n_train} train / {report.n_test} test images\n"
                    f"SVM ({report.kernel}, C={report.C:g}) accuracy {pct(report.svm_accuracy)}; "
                    f"nearest neighbour ({report.measure}) {pct(report.nn_accuracy)}\nsaved {path}")
    if report.failures:
        raise typer.Exit(EXIT_PARTIAL)


def predict(
    images: Annotated[list[Path], typer.Argument(help="Image(s) to identify.", show_default=False)],
    model: ModelReq,
    classifier: ClassifierOpt = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Identify each image among the classifier's identities (closed set: always one of them).

    The score is the SVM's decision value for that identity (linear: the one-vs-rest margin;
    rbf: one-vs-one votes plus a confidence in (-1/3, 1/3)). It is not a similarity and has no
    "unknown" threshold: for open-set questions use `verikit search`.

    Example: verikit classify predict photo1.jpg photo2.jpg --model runs/m
    """
    from ..classify.svm import CLASSIFIER_FILE, SvmClassifier
    from ..errors import ImageError
    from ..models.embedder import Embedder
    from ..models.inference import embed_files

    net = Embedder.load(model, device=device)
    clf = SvmClassifier.load(classifier or Path(model) / CLASSIFIER_FILE, fingerprint=net.fingerprint)
    out = embed_files(net, images, batch_size=batch_size, num_workers=0 if len(images) < 256 else None)
    for _, reason in out.failures:
        warn(f"skipped: {reason}")
    if not out.paths:
        raise ImageError(out.failures[0][1] if out.failures else "no images")
    names, scores = clf.predict(out.embeddings)
    rows = [{"image": str(p), "identity": n, "score": round(float(s), 6)} for p, n, s in zip(out.paths, names, scores)]
    if fmt is OutputFormat.json:
        emit(rows, fmt)
    else:
        from rich.table import Table
        t = Table("image", "identity", "score")
        for r in rows:
            t.add_row(r["image"], r["identity"], f"{r['score']:.4f}")
        emit(None, fmt, t)
    if out.failures:
        raise typer.Exit(EXIT_PARTIAL)


app.command()(fit)
app.command()(predict)
