"""``verikit benchmark``: evaluate a model on a verification or identification protocol.

A Typer group (``pairs``, ``lfw``, ``folder``, ``identify``); other command modules and plugins
may add sub-commands to ``app``. Each command parses its protocol, runs it through the model
(:mod:`verikit.evaluate.benchmark`), prints the result and, with ``--report DIR``, writes
``result.json`` + ``scores.npz`` and the HTML/JSON/figure report there. ``--detector`` /
``--segmenter`` run every file through the same pipeline enroll/verify/search use (largest face,
background masked). An image with no face found is a failure to acquire, reported next to the
rates and scored as ``--on-no-face`` says; unreadable files are skipped and listed, with the
pairs they were in, and the exit status is then 4. ``--threshold`` / ``--calibration`` add the
measured FMR and FNMR at a fixed threshold.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import (EXIT_PARTIAL, BatchOpt, DeviceOpt, FormatOpt, OutputFormat, QuietOpt, emit, info,
                     progress_bar, warn)
from .pipeline_options import (BackgroundOpt, CropMarginOpt, DetectorOpt, DetectorOptionOpt,
                               SegmenterOpt, SegmenterOptionOpt, requested_pipeline)

app = typer.Typer(help="Evaluate a model on a protocol: TAR at FAR with intervals, EER, ROC/DET, reports.",
                  no_args_is_help=True)


class Norm(str, Enum):
    none = "none"
    z = "z"
    t = "t"
    s = "s"
    adaptive = "as"


ModelReq = Annotated[Path, typer.Option("--model", "-m", envvar="VERIKIT_MODEL", show_default=False,
                                        help="Model directory.")]
ReportOpt = Annotated[Optional[Path], typer.Option(
    "--report", show_default=False, help="Write result.json, scores.npz, report.html, report.json and figures here.")]
CacheOpt = Annotated[Optional[Path], typer.Option(
    "--cache", show_default=False, help="Embedding cache folder (keyed by model fingerprint, file path, size, mtime).")]
NormOpt = Annotated[Norm, typer.Option("--norm", help="Score normalisation against --cohort: z, t, s (symmetric) "
                                                      "or as (adaptive S-norm, top-k cohort).")]
CohortOpt = Annotated[Optional[Path], typer.Option(
    "--cohort", show_default=False, help="Cohort for --norm: a folder of images of identities NOT under test.")]
TopKOpt = Annotated[int, typer.Option("--top-k", min=1, help="Cohort size kept per side for --norm as.")]
FarOpt = Annotated[float, typer.Option("--far", min=1e-9, max=1.0,
                                       help="Operating point for the report's histogram threshold.")]
BootOpt = Annotated[int, typer.Option("--bootstrap", min=0, help="Subject-bootstrap replicates (0: none).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for bootstrap (and impostor sampling).")]
NameOpt = Annotated[Optional[str], typer.Option("--name", show_default=False,
                                                help="Run name in reports (default: the model folder's name).")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", show_default=False,
                                                 help="Folder the protocol's paths are relative to.")]


class OnNoFace(str, Enum):
    nonmatch = "nonmatch"
    whole = "whole"
    center = "center"
    drop = "drop"


OnNoFaceOpt = Annotated[OnNoFace, typer.Option(
    "--on-no-face", help="With --detector, what an image with no face found counts as: nonmatch (a failure to "
                         "acquire: its pairs are non-matches, its FTA rate reported), whole (embed the whole image), "
                         "center (embed a centre crop), drop (leave its pairs out; every report says so).")]
ThresholdOpt = Annotated[Optional[float], typer.Option(
    "--threshold", "-t", show_default=False,
    help="Also report the measured FMR and FNMR (with intervals) at this threshold.")]
CalibrationOpt = Annotated[Optional[Path], typer.Option(
    "--calibration", show_default=False,
    help="Also report the measured FMR and FNMR at the threshold a calibration chose (a model directory "
         "holding calibration.json, or the file): does the calibrated threshold transfer to this protocol?")]


def _text(text: str) -> Any:
    """Rich text from a plain string: user data in it (names, paths) is never read as markup."""
    from rich.text import Text

    return Text(text)


def _table(result: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table

    from ..report.text import inputs_lines, operating_point_line

    v = result["verification"]
    unit = (v.get("bootstrap") or {}).get("unit", "subject")
    unscored = v.get("unscored") or {}
    subjects = "subjects unknown" if v.get("subjects_note") else f"{v['n_subjects']} subjects"
    title = f"{result['name']}: {v['n_genuine']:,} genuine / {v['n_impostor']:,} impostor pairs, {subjects}"
    if unscored.get("genuine") or unscored.get("impostor"):
        title += f" ({unscored['genuine']:,} / {unscored['impostor']:,} unscored: no face)"
    t = Table(title=_text(title))
    for col in ("FAR", "threshold", "TAR", "Wilson 95%", "subject bootstrap 95%", "supported"):
        t.add_column(col, justify="right")
    for r in v["tar_at_far"]:
        boot = r["tar_bootstrap_ci"]
        if r["supported"]:
            t.add_row(f"{r['far']:g}", f"{r['threshold']:.5f}", f"{r['tar']:.4f}",
                      f"[{r['tar_interval'][0]:.4f}, {r['tar_interval'][1]:.4f}]",
                      f"[{boot[0]:.4f}, {boot[1]:.4f}]" if boot else "n/a", "yes")
        else:
            t.add_row(f"{r['far']:g}", "-", "-", "-", "-", f"no (< {v['min_supported_far']:.2g})")
    e = v["eer"]
    ci = e["bootstrap_ci"]
    caption = f"EER {100 * e['value']:.2f}% at threshold {e['threshold']:.5f}"
    caption += f" [{100 * ci[0]:.2f}%, {100 * ci[1]:.2f}%] ({unit} bootstrap)" if ci else ""
    caption += f"; AUC {v['auc']:.4f}"
    if result.get("folds"):
        f = result["folds"]
        caption += f"; {f['folds']}-fold accuracy {100 * f['mean']:.2f}% +- {100 * f['std_error']:.2f}% (SE)"
    t.caption = _text(caption)
    lines = inputs_lines(result) + [operating_point_line(p) for p in v.get("at_threshold") or []]
    if v.get("subjects_note") or "not shown" in v.get("interval_note", ""):
        lines.append(v["interval_note"])
    return Group(t, *(_text(line) for line in lines))


def _identification_table(result: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.table import Table

    from ..report.text import format_interval, inputs_lines

    i = result["identification"]
    t = Table(title=_text(f"{result['name']}: {i['n_gallery_identities']} gallery identities "
                          f"({i['n_gallery_templates']} templates), {i['n_mated']} mated / "
                          f"{i['n_non_mated']} non-mated probes"))
    t.add_column("measure")
    t.add_column("value", justify="right")
    if "rank1" in i:
        t.add_row("rank-1", f"{i['rank1']:.4f} {format_interval(i['rank1_interval'])} (Wilson 95%)")
        t.add_row("mAP", f"{i['map']:.4f}")
        t.add_row(f"CMC at rank {len(i['cmc'])}", f"{i['cmc'][-1]:.4f}")
    for d in i.get("dir_at_fpir") or []:
        t.add_row(f"DIR at FPIR {d['fpir']:g}", f"{d['dir']:.4f} (threshold {d['threshold']:.5f}, measured FPIR "
                                                 f"{d['measured_fpir']:.4g}{'' if d['supported'] else ', unsupported'})")
    lines = inputs_lines(result)
    if i.get("misses_without_score"):
        lines.append(f"{i['misses_without_score']} mated probe(s) could not be scored (no face, or their identity "
                     "has no template): counted as misses")
    return Group(t, *(_text(line) for line in lines))


def _operating_points(threshold: Optional[float], calibration: Optional[Path], net: Any, embedder: Any,
                      norm: Norm, cohort: Optional[Path]) -> tuple[list[dict[str, Any]], Any, Norm]:
    """The fixed thresholds to report, and the cohort / normalisation a calibration brings along."""
    import math

    from ..errors import DataError

    points: list[dict[str, Any]] = []
    if threshold is not None:
        if not math.isfinite(threshold):
            raise typer.BadParameter(f"{threshold} is not a finite number", param_hint="--threshold")
        points.append({"source": "--threshold", "threshold": float(threshold)})
    cohort_vectors = None
    if calibration is not None:
        from ..calibrate.threshold import Calibration

        cal = Calibration.load(calibration, fingerprint=net.fingerprint)
        recorded = (cal.data or {}).get("pipeline")
        ours = embedder.pipeline_record()
        method = (cal.normalization or {}).get("method")
        if method and norm is Norm.none:
            norm = Norm(method)
            if cohort is None:  # the cohort saved with the calibration: exactly what verify/search use
                cohort_vectors = cal.cohort.embeddings
            info(f"scores are {method}-normalised, as the calibration's are")
        elif (method or "none") != norm.value:
            raise DataError(f"calibration '{calibration}' thresholds {'raw' if not method else method + '-normalised'} "
                            f"scores, not --norm {norm.value}: run the benchmark with the calibration's normalisation")
        matches = _same_pipeline(recorded, ours)
        if not matches:
            warn(f"calibration '{calibration}' was made through {_describe(recorded)}, this benchmark runs "
                 f"{_describe(ours)}: its threshold is not meant for these scores")
        points.append({"source": "calibration", "path": str(calibration), "threshold": float(cal.threshold),
                       "target_fmr": cal.target_fmr, "calibrated_fmr": cal.measured_fmr,
                       "calibrated_on": (cal.data or {}).get("path"), "calibration_pipeline": recorded,
                       "pipeline_matches": matches, "normalization": cal.normalization})
    return points, cohort_vectors, norm


def _same_pipeline(a: Optional[dict[str, Any]], b: Optional[dict[str, Any]]) -> bool:
    """Equal pipelines; a weights digest counts only where both recorded one."""
    if a is None or b is None:
        return a is None and b is None
    keys = set(a) | set(b)
    return all(a.get(k) == b.get(k) or (k.endswith("_weights") and None in (a.get(k), b.get(k))) for k in keys)


def _describe(record: Optional[dict[str, Any]]) -> str:
    if not record:
        return "whole images (no detector or segmenter)"
    parts = [f"detector {record['detector']}" + (f" {record['options']}" if record.get("options") else "")
             if record.get("detector") else "",
             f"segmenter {record['segmenter']}" if record.get("segmenter") else ""]
    return ", ".join(p for p in parts if p) or "whole images"


def _embedder(model: Path, device: str, pipeline: Any, batch_size: int, on_no_face: OnNoFace) -> tuple[Any, Any]:
    from ..models.embedder import Embedder
    from ..pipeline.files import FileEmbedder

    if on_no_face is not OnNoFace.nonmatch and pipeline is None:
        raise typer.BadParameter("--on-no-face only applies with --detector SPEC", param_hint="--on-no-face")
    net = Embedder.load(model, device=device)
    fallback = on_no_face.value if on_no_face in (OnNoFace.whole, OnNoFace.center) else None
    return net, FileEmbedder(net, pipeline, batch_size, fallback=fallback)


def _run_and_render(protocol: Any, model: Path, *, report: Optional[Path], cache: Optional[Path], norm: Norm,
                    cohort: Optional[Path], top_k: int, far: float, n_boot: int, seed: int, name: Optional[str],
                    batch_size: int, device: str, fmt: OutputFormat, quiet: bool, pipeline: Any = None,
                    on_no_face: OnNoFace = OnNoFace.nonmatch, threshold: Optional[float] = None,
                    calibration: Optional[Path] = None) -> None:
    from ..evaluate.benchmark import run_pairs
    from ..errors import DataError

    net, embedder = _embedder(model, device, pipeline, batch_size, on_no_face)
    points, cohort_vectors, norm = _operating_points(threshold, calibration, net, embedder, norm, cohort)
    if norm is not Norm.none and cohort is None and cohort_vectors is None:
        raise DataError("--norm needs --cohort DIR (a folder of images of identities not under test)")
    cohort_files = None
    if cohort is not None and norm is not Norm.none:
        from ..io import list_images
        cohort_files = list_images(cohort)[0]
    with progress_bar(f"embedding {len(protocol.files)} file(s)", len(protocol.files), quiet) as advance:
        result, scores = run_pairs(embedder, protocol, model_path=str(model), name=name, cache_dir=cache,
                                   norm=None if norm is Norm.none else norm.value, cohort_files=cohort_files,
                                   cohort=cohort_vectors, top_k=top_k, n_boot=n_boot, seed=seed, progress=advance,
                                   on_no_face=on_no_face.value, operating_points=points)
    _finish(result, scores, report, far, n_boot, seed, fmt)


def _finish(result: dict[str, Any], scores: Any, report: Optional[Path], far: float, n_boot: int, seed: int,
            fmt: OutputFormat) -> None:
    for item in result["skipped"]["files"]:
        warn(f"skipped: {item['reason']}")
    if result["skipped"]["pairs"]:
        warn(f"{result['skipped']['pairs']} pair(s) dropped because a file was skipped")
    acq = result.get("acquisition") or {}
    if acq.get("no_face") and acq["on_no_face"] != "drop":
        warn(f"no face found in {acq['no_face']} image(s) (failure to acquire): scored as {acq['scored_as']}")
    if report is not None:
        from ..report.build import write_report
        from ..report.results import load_run, write_run

        path = write_run(report, result, scores)
        paths = write_report([load_run(path)], report, far=far, n_boot=n_boot, seed=seed)
        info(f"report: {paths['html']}")
    if fmt is OutputFormat.json:
        emit(result, fmt)
    elif result.get("verification"):
        emit(result, fmt, _table(result))
    else:
        emit(result, fmt, _identification_table(result))
    if result["skipped"]["files"]:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("pairs")
def pairs(
    pairs_file: Annotated[Path, typer.Option("--pairs", "-p", show_default=False,
                                             help="CSV of path_a,path_b,label[,subject_a,subject_b] (label 1/0, "
                                                  "true/false, same/different, yes/no; header optional).")],
    model: ModelReq, root: RootOpt = None, report: ReportOpt = None, cache: CacheOpt = None,
    norm: NormOpt = Norm.none, cohort: CohortOpt = None, top_k: TopKOpt = 300, far: FarOpt = 1e-3,
    n_boot: BootOpt = 1000, seed: SeedOpt = 0, name: NameOpt = None, batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto", fmt: FormatOpt = OutputFormat.table, quiet: QuietOpt = False,
    detector: DetectorOpt = None, detector_option: DetectorOptionOpt = None, crop_margin: CropMarginOpt = None,
    segmenter: SegmenterOpt = None, segmenter_option: SegmenterOptionOpt = None, background: BackgroundOpt = None,
    on_no_face: OnNoFaceOpt = OnNoFace.nonmatch, threshold: ThresholdOpt = None, calibration: CalibrationOpt = None,
) -> None:
    """Verification on a pairs CSV (path_a,path_b,label).

    Paths are relative to --root (default: the CSV's folder). Two optional columns,
    subject_a,subject_b, name each file's person (for the subject bootstrap); without them a
    file's subject is its folder, unless the folders contradict the labels.

    Example: verikit benchmark pairs --pairs val_pairs.csv --root data --model runs/orl --report out/
    """
    from ..evaluate.protocols import read_pairs_csv

    _run_and_render(read_pairs_csv(pairs_file, root), model, report=report, cache=cache, norm=norm, cohort=cohort,
                    top_k=top_k, far=far, n_boot=n_boot, seed=seed, name=name, batch_size=batch_size,
                    device=device, fmt=fmt, quiet=quiet,
                    pipeline=requested_pipeline(detector, detector_option, crop_margin, segmenter, segmenter_option,
                                                background), on_no_face=on_no_face, threshold=threshold,
                    calibration=calibration)


@app.command("lfw")
def lfw(
    pairs_file: Annotated[Path, typer.Option("--pairs", "-p", show_default=False,
                                             help="LFW pairs.txt (View 2: 10 folds) or pairsDevTest.txt (View 1).")],
    root: Annotated[Path, typer.Option("--root", show_default=False,
                                       help="LFW image folder (root/name/name_0001.jpg).")],
    model: ModelReq, report: ReportOpt = None, cache: CacheOpt = None, norm: NormOpt = Norm.none,
    cohort: CohortOpt = None, top_k: TopKOpt = 300, far: FarOpt = 1e-3, n_boot: BootOpt = 1000,
    seed: SeedOpt = 0, name: NameOpt = None, batch_size: BatchOpt = 64, device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table, quiet: QuietOpt = False,
    detector: DetectorOpt = None, detector_option: DetectorOptionOpt = None, crop_margin: CropMarginOpt = None,
    segmenter: SegmenterOpt = None, segmenter_option: SegmenterOptionOpt = None, background: BackgroundOpt = None,
    on_no_face: OnNoFaceOpt = OnNoFace.nonmatch, threshold: ThresholdOpt = None, calibration: CalibrationOpt = None,
) -> None:
    """LFW pairs.txt: ROC/EER/TAR at FAR, and 10-fold accuracy for View 2.

    In View 2 each fold's threshold is fitted (max accuracy) on the other nine folds; the
    report gives the mean accuracy +- its standard error.

    Example: verikit benchmark lfw --pairs lfw/pairs.txt --root lfw/images --model runs/face
    """
    from ..evaluate.protocols import read_lfw_pairs

    _run_and_render(read_lfw_pairs(pairs_file, root), model, report=report, cache=cache, norm=norm, cohort=cohort,
                    top_k=top_k, far=far, n_boot=n_boot, seed=seed, name=name, batch_size=batch_size,
                    device=device, fmt=fmt, quiet=quiet,
                    pipeline=requested_pipeline(detector, detector_option, crop_margin, segmenter, segmenter_option,
                                                background), on_no_face=on_no_face, threshold=threshold,
                    calibration=calibration)


@app.command("folder")
def folder(
    data_dir: Annotated[Path, typer.Argument(help="One sub-folder per identity (identities not trained on).",
                                             show_default=False)],
    model: ModelReq,
    max_impostors: Annotated[Optional[int], typer.Option(
        "--max-impostors", min=1, show_default=False,
        help="Sample at most this many impostor pairs (uniformly, with --seed); default: all.")] = None,
    report: ReportOpt = None, cache: CacheOpt = None, norm: NormOpt = Norm.none, cohort: CohortOpt = None,
    top_k: TopKOpt = 300, far: FarOpt = 1e-3, n_boot: BootOpt = 1000, seed: SeedOpt = 0, name: NameOpt = None,
    batch_size: BatchOpt = 64, device: DeviceOpt = "auto", fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
    detector: DetectorOpt = None, detector_option: DetectorOptionOpt = None, crop_margin: CropMarginOpt = None,
    segmenter: SegmenterOpt = None, segmenter_option: SegmenterOptionOpt = None, background: BackgroundOpt = None,
    on_no_face: OnNoFaceOpt = OnNoFace.nonmatch, threshold: ThresholdOpt = None, calibration: CalibrationOpt = None,
) -> None:
    """All pairs of a folder-per-identity set (impostors optionally sampled).

    Every genuine pair, and every impostor pair or a uniform sample of --max-impostors of them
    (the seed is recorded in the result).

    Example: verikit benchmark folder data/val --model runs/orl --max-impostors 1000000 --seed 1
    """
    from ..evaluate.protocols import folder_pairs

    protocol = folder_pairs(data_dir, max_impostors=max_impostors, seed=seed)
    for p in protocol.info.get("skipped_files", []):
        warn(f"not used: {p}")
    _run_and_render(protocol, model, report=report, cache=cache, norm=norm, cohort=cohort, top_k=top_k, far=far,
                    n_boot=n_boot, seed=seed, name=name, batch_size=batch_size, device=device, fmt=fmt, quiet=quiet,
                    pipeline=requested_pipeline(detector, detector_option, crop_margin, segmenter, segmenter_option,
                                                background), on_no_face=on_no_face, threshold=threshold,
                    calibration=calibration)


@app.command("identify")
def identify(
    gallery: Annotated[Path, typer.Option("--gallery", show_default=False, help="CSV of path,identity (enrolled).")],
    probes: Annotated[Path, typer.Option("--probes", show_default=False,
                                         help="CSV of path,identity; identities absent from the gallery are "
                                              "non-mated (open set).")],
    model: ModelReq, root: RootOpt = None, report: ReportOpt = None, cache: CacheOpt = None,
    max_rank: Annotated[int, typer.Option("--max-rank", min=1, help="Longest rank of the CMC.")] = 20,
    name: NameOpt = None, batch_size: BatchOpt = 64, device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table, quiet: QuietOpt = False,
    detector: DetectorOpt = None, detector_option: DetectorOptionOpt = None, crop_margin: CropMarginOpt = None,
    segmenter: SegmenterOpt = None, segmenter_option: SegmenterOptionOpt = None, background: BackgroundOpt = None,
    on_no_face: OnNoFaceOpt = OnNoFace.nonmatch,
) -> None:
    """Identification: closed-set CMC / rank-1 and open-set DIR at FPIR.

    Example: verikit benchmark identify --gallery gallery.csv --probes probes.csv --model runs/orl
    """
    from ..evaluate.benchmark import run_identification
    from ..evaluate.protocols import read_identification

    protocol = read_identification(gallery, probes, root)
    pipeline = requested_pipeline(detector, detector_option, crop_margin, segmenter, segmenter_option, background)
    _, embedder = _embedder(model, device, pipeline, batch_size, on_no_face)
    n = len(protocol.gallery) + len(protocol.probes)
    with progress_bar(f"embedding {n} file(s)", n, quiet) as advance:
        result = run_identification(embedder, protocol, model_path=str(model), name=name, cache_dir=cache,
                                    max_rank=max_rank, progress=advance, on_no_face=on_no_face.value)
    _finish(result, None, report, 1e-3, 0, 0, fmt)
