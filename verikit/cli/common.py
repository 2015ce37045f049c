"""What every command shares: option aliases, stderr console and progress, output rendering,
and loading the model/gallery/threshold a command needs. Heavy imports stay inside functions so
``verikit --help`` never imports torch."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
from rich.console import Console

from typer.core import TyperGroup

err_console = Console(stderr=True)
out_console = Console(soft_wrap=True)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_MATCH, EXIT_PARTIAL = 0, 1, 2, 3, 4


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


ModelOpt = Annotated[Optional[Path], typer.Option(
    "--model", "-m", envvar="VERIKIT_MODEL", show_default=False,
    help="Model directory (config.json + model.safetensors). Defaults to the model the gallery was enrolled with.")]
GalleryOpt = Annotated[Path, typer.Option(
    "--gallery", "-g", envvar="VERIKIT_GALLERY", help="Gallery directory.")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Result format on stdout.")]
def _finite_threshold(value: Optional[float]) -> Optional[float]:
    """NaN would compare false with every score and infinity decides nothing: refused as usage errors."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value


ThresholdOpt = Annotated[Optional[float], typer.Option(
    "--threshold", "-t", show_default=False, callback=_finite_threshold,
    help="Similarity threshold (a match is score >= threshold). Default: the model's calibration.json.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N, or auto (CUDA when present).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

DEFAULT_GALLERY = Path("verikit-gallery")


def _escape_undecodable(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte of a file name that is not UTF-8 (held by Python as a lone
    surrogate) prints as ``\\xNN``, as :func:`verikit.io.path_text` stores it; any other character
    the stream cannot encode prints as a backslash escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for c in exc.object[exc.start:exc.end]:
        code = ord(c)
        out.append(f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else c.encode("ascii", "backslashreplace").decode())
    return "".join(out), exc.end


def safe_output() -> None:
    """Make stdout and stderr print every string: a file name that is not UTF-8, echoed back from
    the command line, must not crash a command after its work is done."""
    import codecs

    codecs.register_error("verikit-escape", _escape_undecodable)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="verikit-escape")


def emit(data: Any, fmt: OutputFormat, table: Any = None) -> None:
    """Results go to stdout: JSON with a stable schema, or a rich table for people."""
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif table is not None:
        out_console.print(table)
    else:
        out_console.print(data)


def warn(message: str) -> None:
    from rich.text import Text

    err_console.print(Text.assemble(("warning: ", "yellow"), message), soft_wrap=True)


def info(message: str) -> None:
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)


def warn_skipped(reason: str) -> None:
    """The warning for an input a batch command left out (``reason`` names the file)."""
    warn(f"skipped: {reason}")


PROGRESS_INTERVAL_ENV = "VERIKIT_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL = 10.0  # seconds between progress lines in a log


class ProgressLog:
    """Progress as log lines for a stderr that is not a terminal (a file, a pipe, a CI log).

    A bar redrawn in place turns into noise in a file, and printing nothing until the end leaves a
    long run silent, so every ``interval`` seconds one line says how far it got, how fast and
    when it should end: ``embedding 400 file(s): 120/400 (30%), 45.2/s, ETA 0:00:06``. A run
    shorter than one interval prints nothing; one that printed lines ends with a ``done`` line.
    """

    def __init__(self, description: str, total: int | None, interval: float, *,
                 clock: Callable[[], float] = time.monotonic, write: Callable[[str], None] | None = None) -> None:
        self.description, self.total, self.interval = description, total, interval
        self.clock, self.write = clock, write or info
        self.start = self.last = clock()
        self.done = 0
        self.lines = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.lines += 1
            self.write(self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.description}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} ({100 * self.done / self.total:.0f}%)"
        text += f", {rate:.1f}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {_clock_time((self.total - self.done) / rate)}"
        return text

    def close(self) -> None:
        if self.lines:
            now = self.clock()
            self.write(f"{self.description}: done, {self.done:,} in {_clock_time(now - self.start)} "
                       f"({self.done / max(now - self.start, 1e-9):.1f}/s)")


def _clock_time(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress_interval() -> float:
    """Seconds between progress lines in a log: ``$VERIKIT_PROGRESS_INTERVAL`` or 10."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_PROGRESS_INTERVAL
    except ValueError:
        value = DEFAULT_PROGRESS_INTERVAL
    return value if value >= 0 and value == value else DEFAULT_PROGRESS_INTERVAL


@contextmanager
def progress_bar(description: str, total: int | None, quiet: bool = False) -> Iterator[Any]:
    """A rich progress bar on stderr (log lines when stderr is not a terminal); yields ``advance(n)``."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    if quiet:
        yield lambda n=1: None
        return
    if not err_console.is_terminal:  # a log file gets lines at intervals, not a bar redrawn in place
        log = ProgressLog(description, total, progress_interval())
        yield log.advance
        log.close()
        return
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def images_with_progress(paths: list[Path], description: str, quiet: bool, failures: list[str]) -> Iterator[Any]:
    """``(path, RGB image)`` for each readable file, with a progress bar; unreadable ones are
    appended to ``failures`` (their one-line reasons) and skipped."""
    from ..errors import ImageError
    from ..io import load_image

    with progress_bar(description, len(paths), quiet) as advance:
        for path in paths:
            try:
                image = load_image(path)
            except ImageError as exc:
                failures.append(str(exc))
            else:
                yield path, image
            advance(1)


def report_skipped(paths: list[Path], failures: list[str]) -> None:
    """A single unreadable input is the command's error; in a batch each is a warning (exit 4 later)."""
    from ..errors import ImageError

    if len(paths) == 1 and failures:
        raise ImageError(failures[0])
    for reason in failures:
        warn_skipped(reason)


def output_name(folder: Path, path: Path, used: set[str], suffix: str = ".png") -> Path:
    """``folder/<stem>_<ext><suffix>``, numbered when two inputs share a name in one run."""
    stem = f"{path.stem or path.name}{path.suffix.replace('.', '_')}"
    name, n = f"{stem}{suffix}", 1
    while name in used:
        name, n = f"{stem}-{n}{suffix}", n + 1
    used.add(name)
    return folder / name


@contextmanager
def printed_warnings() -> Iterator[None]:
    """Inside: each :class:`verikit.VerikitWarning` the library issues is printed as one ``warning:``
    line on stderr when it happens (every time, not once per place); other warnings as Python shows them."""
    import warnings

    from ..errors import VerikitWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", VerikitWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, VerikitWarning):
                warn(str(message))
            else:
                shown(message, category, filename, lineno, file, line)
        warnings.showwarning = show
        yield


def trainer_of(registry: Any, name: str, protocol: Any, command: str) -> Any:
    """The ``train`` function of a trainable plugin, or a one-line error naming the trainable ones installed."""
    from ..errors import PluginError

    factory = registry.get(name)
    if isinstance(factory, protocol):
        return factory.train
    trainable = []
    for other in registry.names():
        try:
            if isinstance(registry.get(other), protocol):
                trainable.append(other)
        except PluginError:
            continue
    raise PluginError(f"{registry.kind} {name!r} cannot be trained by {command} (its plugin has no train "
                      f"function); trainable here: {', '.join(trainable) or 'none'}")


def debug_enabled() -> bool:
    return os.environ.get("VERIKIT_DEBUG", "") not in ("", "0", "false", "no")


class DefaultCommandGroup(TyperGroup):
    """A command group that runs its ``default_command`` when the first argument names no
    sub-command, so ``verikit detect IMAGE...`` and ``verikit detect train ...`` both work."""

    default_command = "run"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        help_only = bool(args) and args[0] in ctx.help_option_names
        if args and not help_only and args[0] not in self.commands:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)
