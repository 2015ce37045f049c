"""The ``verikit`` application and its single error boundary.

Known errors (:class:`verikit.errors.VerikitError`) become one line on stderr and exit status 1;
``VERIKIT_DEBUG=1`` shows the traceback instead. Exit codes: 0 ran, 1 known error, 2 usage,
3 no match / unknown (with --exit-code), 4 finished but skipped some inputs.
"""

from __future__ import annotations

import os
import sys

# Before anything imports torch: idle OpenMP threads sleep instead of spinning. Several verikit
# processes (CLI runs, servers, notebooks) usually share the cores; spinning threads burn the CPU
# the others need. Measured on 2 cores with other jobs running (resnet18 at 112 px, batches of 64,
# interleaved rounds): one process 23-29 -> 36-38 img/s, four at once 24-27 -> 37-48 img/s in total.
# An explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from . import (benchmark, calibrate, classify, demo, detect, enroll, ensemble, gallery, oneshot,  # noqa: E402
               pair_head, plugins, query, report, train)

app = typer.Typer(
    name="verikit",
    help="Metric-learning verification: train an embedder, enroll a gallery, verify (1:1) and search (1:N).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(enroll.enroll)
app.command()(query.verify)
app.command()(query.search)
app.add_typer(gallery.app, name="gallery")
app.command()(train.train)
app.command()(calibrate.calibrate)
app.command()(demo.demo)
app.command()(plugins.plugins)
app.add_typer(benchmark.app, name="benchmark")
app.add_typer(classify.app, name="classify")
app.add_typer(pair_head.app, name="pair-head")
app.command()(report.report)
app.command()(ensemble.ensemble)
benchmark.app.command("detection")(detect.benchmark_detection)
benchmark.app.command("oneshot")(oneshot.oneshot)
from . import detect_train  # noqa: E402 - kept beside its registration lines
from .common import DefaultCommandGroup  # noqa: E402

# `verikit detect IMAGE...` finds faces (the group's default command); `verikit detect train` fine-tunes.
detect_app = typer.Typer(cls=DefaultCommandGroup, no_args_is_help=True,
                         help="Find faces: `verikit detect IMAGE...` (boxes as JSON), or `verikit detect train` "
                              "to fine-tune a detector on annotated boxes.")
detect_app.command("run", help=detect.detect.__doc__)(detect.detect)
detect_app.command("train")(detect_train.detect_train)
app.add_typer(detect_app, name="detect")
from . import segment  # noqa: E402 - kept beside its one registration line
app.add_typer(segment.app, name="segment")
from . import serve  # noqa: E402 - kept beside its one registration line
app.add_typer(serve.app, name="serve")
from . import model as model_cli  # noqa: E402 - kept beside its registration lines
app.add_typer(model_cli.app, name="model")
app.callback()(model_cli.root_options)


def main() -> None:
    from .common import EXIT_ERROR, debug_enabled, err_console, safe_output

    safe_output()
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as exc:  # the one boundary: known errors get one line, bugs keep their traceback
        from ..errors import VerikitError

        if debug_enabled() or not isinstance(exc, VerikitError):
            raise
        from rich.text import Text

        from .display import visible

        # Text, not markup: a file name like "[1].jpg" must print as itself; control characters escaped.
        err_console.print(Text.assemble(("error: ", "red"), visible(str(exc))), soft_wrap=True)
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
