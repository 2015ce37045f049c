"""Every shell command in the documentation runs, so the docs cannot drift from the CLI.

Commands come from the fenced ``bash`` / ``sh`` blocks of README.md, docs/*.md and
plugins/*/README.md, read when the test runs (whatever commands exist then). Each block is
checked with ``bash -n``; each command in it is expanded by bash itself (quotes, ``$VARS`` set
earlier in the block, ``\\`` continuations; comments dropped) and then:

* ``verikit ...`` (also ``python -m verikit.cli.main ...`` and ``torchrun ... -m verikit.cli.main``):
  its exact argv is parsed by the Typer app, sub-command by sub-command, up to argument
  validation (``typer.main.get_command(app).make_context``: unknown options, missing required
  ones, bad choices and extra arguments all fail). Then it **runs for real**, in-process, in a
  sandbox holding small stand-ins for the names the docs use (a tiny random-weight model at
  ``runs/face``, ``demo-output/model``...; four ORL people at ``data/val``, ``PEOPLE_DIR``...;
  face photos at ``photo.jpg``...; ``../shared/data`` is the real data when present). It must
  exit 0, 3 or 4 -- or, when the next line of the block is a comment ``# error: TEXT``, fail
  with exit 1 and that text (up to a trailing ``...``).
* ``python -m MODULE ...`` and ``python SCRIPT.py ...`` (argparse programs such as the
  benchmarks): parsed by their own argument parser, up to ``parse_args``, never run.
* ``make TARGET``: the Makefile has the target. ``pip install [-e] PATH``: the path exists.
  ``python -m pytest PATHS``: the paths (globs) exist.
* ``mkdir``, ``ln``, ``cp``, ``touch`` and ``for`` loops of them run in the sandbox (run mode only),
  so a block can build its own inputs; other shell commands are only syntax-checked.

A block that cannot run here says so in an HTML comment (invisible on the rendered page) on the
line before its opening fence, with the reason::

    <!-- doc-test: parse-only (trains for 50 epochs) -->

Its ``verikit`` commands are then parsed as above and invoked in an EMPTY folder, where they must
fail on their missing inputs (exit 1), never on their arguments (exit 2). ``skip (reason)``
leaves a block at the ``bash -n`` check (for text that is not a command at all).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*doc-test:\s*(parse-only|skip)\s*\((.+?)\)\s*-->")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SANDBOX_SHELL = {"mkdir", "ln", "cp", "touch"}
EXIT_OK = {0, 3, 4}


def _doc_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("plugins/*/README.md"))]
    return [f for f in files if f.is_file()]


@dataclass
class Block:
    path: Path
    line: int            # 1-based line of the opening fence
    text: str
    mode: str            # "run", "parse-only", "skip"
    reason: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) not in ("bash", "sh"):
            continue
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        mode, reason = (marker.group(1), marker.group(2).strip()) if marker else ("run", "")
        out.append(Block(path, line, m.group(2), mode, reason))
    return out


ALL_BLOCKS = [b for f in _doc_files() for b in _blocks(f)]


@dataclass
class Command:
    text: str            # the shell text (continuations joined)
    line: int            # offset in the block
    expect_error: str | None = None
    compound: bool = False
    assignments: list[str] = field(default_factory=list)


def _commands(block: Block) -> list[Command]:
    """Complete shell commands of a block (continuations joined, for/if bodies kept together)."""
    lines = block.text.splitlines()
    out: list[Command] = []
    k = 0
    while k < len(lines):
        start = k
        text = lines[k]
        while text.rstrip().endswith("\\") and k + 1 < len(lines):
            k += 1
            text = text.rstrip()[:-1] + " " + lines[k].strip()
        first = text.strip().split(" ", 1)[0] if text.strip() else ""
        depth = _depth(text)
        while depth > 0 and k + 1 < len(lines):  # a for/while/if spanning lines
            k += 1
            text += "\n" + lines[k]
            depth = _depth(text)
        k += 1
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if stripped.startswith("# error:") and out:
                out[-1].expect_error = stripped[len("# error:"):].strip().rstrip(".").strip()
            continue
        out.append(Command(text, start, compound=first in ("for", "while", "if") or ";" in _code(text)))
    return out


def _code(text: str) -> str:
    """``text`` without its comment (a ``#`` that starts a word, outside quotes)."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
        lexer.commenters = "#"
        lexer.whitespace_split = True
        return " ".join(lexer)
    except ValueError:
        return text


def _depth(text: str) -> int:
    words = re.findall(r"(?<![\w$])(for|while|until|if|do|done|fi)(?![\w])", _code(text))
    return sum(1 for w in words if w in ("for", "while", "until", "if")) - sum(1 for w in words if w in ("done", "fi"))


def _argv(prelude: str, command: str, cwd: Path) -> list[str]:
    """The words bash makes of ``command`` (variables from ``prelude``), without running it."""
    script = f"{prelude}\nset -f\n__words() {{ printf '%s\\0' \"$@\"; }}\n__words {command}\n"
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=30)
    assert r.returncode == 0, f"bash could not expand {command!r}: {r.stderr}"
    return r.stdout.split("\0")[:-1]


# ----------------------------------------------------------------------------- the sandbox


def _person_folders(root: Path, orl: Path, people: range, per: int = 4) -> Path:
    for s in people:
        (root / f"s{s}").mkdir(parents=True, exist_ok=True)
        for k in range(1, per + 1):
            shutil.copy(orl / f"s{s}" / f"{k}.pgm", root / f"s{s}" / f"{k}.pgm")
    return root


def _jpeg(src: Path, dst: Path) -> None:
    from PIL import Image

    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("RGB").resize((184, 224)).save(dst, quality=95)


def _tiny_model(path: Path, seed: int) -> None:
    import torch

    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    torch.manual_seed(seed)
    Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32))).eval().save(path)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, orl) -> Path:
    """A working folder with stand-ins for every name the docs' runnable commands use."""
    import numpy as np

    from verikit.evaluate.pairs import all_pairs
    from verikit.io import scan_identity_folders
    from verikit.models.embedder import Embedder
    from verikit.models.inference import embed_files
    from verikit.pipeline.operations import commit_enrollment, open_gallery_for, prepare_enrollment
    from verikit.calibrate.threshold import calibrate

    top = tmp_path_factory.mktemp("docs")
    work = top / "work"
    work.mkdir()
    shared = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data")
    if shared.is_dir():
        (top / "shared").mkdir()
        (top / "shared" / "data").symlink_to(shared.resolve())
    (work / "data").mkdir()
    (work / "data" / "orl_faces").symlink_to(orl.resolve())
    people = _person_folders(work / "data" / "val", orl, range(21, 25))
    for name in ("data/faces", "PEOPLE_DIR", "DATA_DIR", "VAL_DIR", "S31_TO_S40", "S1_TO_S30", "people-dir"):
        shutil.copytree(people, work / name)
    _person_folders(work / "COHORT", orl, range(25, 29))
    for k, name in enumerate(("photo.jpg", "other.jpg", "group.jpg", "probe.jpg", "a1.jpg", "a2.jpg", "IMG.jpg")):
        _jpeg(orl / "s1" / f"{k + 1}.pgm", work / name)
    for name in ("runs/face", "runs/orl", "runs/a-model", "M", "MODEL", "demo-output/model"):
        _tiny_model(work / name, 0)
    _tiny_model(work / "runs/b-model", 1)
    # demo-output: calibrated model and a gallery of s31-s40 (five images each), as `make demo` leaves them
    model = Embedder.load(work / "demo-output/model", device="cpu")
    scan = scan_identity_folders(orl)
    items = [(n, p) for n, p in scan.items if p.stem in ("1", "2", "3")]  # enough to calibrate on
    out = embed_files(model, [p for _, p in items], num_workers=0)
    labels = [n for n, _ in items]
    g, i = all_pairs(out.embeddings, labels, model.config.similarity)
    calibrate(g, i, 0.01, model.fingerprint).save(work / "demo-output/model")
    todo = {f"s{s}": [str(orl / f"s{s}" / f"{k}.pgm") for k in range(1, 6)] for s in range(31, 41)}
    gallery = open_gallery_for(model, work / "demo-output/gallery", create=True,
                               model_path=str((work / "demo-output/model").resolve()))
    with contextlib.closing(gallery):
        commit_enrollment(gallery, prepare_enrollment(model, todo))
    # protocol files for `benchmark pairs|lfw|identify`, relative to data/val
    rows = ["path_a,path_b,label"] + [f"s{s}/1.pgm,s{s}/{k}.pgm,same" for s in range(21, 25) for k in (2, 3)]
    rows += [f"s{s}/1.pgm,s{t}/2.pgm,different" for s in range(21, 25) for t in range(21, 25) if s != t]
    (work / "pairs.csv").write_text("\n".join(rows) + "\n")
    (work / "gallery.csv").write_text("".join(f"s{s}/1.pgm,s{s}\n" for s in range(21, 24)))
    (work / "probes.csv").write_text("".join(f"s{s}/2.pgm,s{s}\n" for s in range(21, 25)))
    lfw = work / "lfw" / "images"
    for s in range(21, 25):
        for k in range(1, 4):
            _jpeg(orl / f"s{s}" / f"{k}.pgm", lfw / f"P{s}" / f"P{s}_{k:04d}.jpg")
    (work / "lfw" / "pairs.txt").write_text("2\nP21 1 2\nP22 1 3\nP21 1 P22 2\nP23 1 P24 1\n")
    assert np.isfinite(g).all()
    return work


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory) -> Path:
    """Where parse-only commands are invoked: nothing they name exists here."""
    return tmp_path_factory.mktemp("empty") / "nothing-here"


# ----------------------------------------------------------------------------- checkers


def _typer_parse(argv: list[str]) -> None:
    """Parse ``argv`` with the real command tree up to argument validation (no command runs)."""
    import typer

    from verikit.cli.main import app

    cmd = typer.main.get_command(app)
    name, args, parent = "verikit", list(argv), None
    while True:
        ctx = cmd.make_context(name, list(args), parent=parent)
        if not hasattr(cmd, "resolve_command"):
            return
        rest = list(ctx.args)
        if len(rest) == len(args):  # a group that inserted its default command (verikit detect IMG...)
            sub = getattr(cmd, "default_command")
        else:
            sub = args[len(args) - len(rest) - 1]
        name, sub_cmd, args = cmd.resolve_command(ctx, [sub, *rest])
        cmd, parent = sub_cmd, ctx


def _argparse_parse(target: list[str], cwd: Path) -> None:
    """Run an argparse program up to ``parse_args`` (``target``: ``["-m", MODULE, ...]`` or ``[SCRIPT, ...]``)."""
    import argparse

    class Parsed(Exception):
        pass

    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed

    saved = list(sys.argv)
    argparse.ArgumentParser.parse_args = parse_and_stop
    try:
        if target[0] == "-m":
            sys.argv = [target[1], *target[2:]]
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            script = REPO / target[0]
            assert script.is_file(), f"{target[0]} does not exist"
            sys.argv = [str(script), *target[1:]]
            runpy.run_path(str(script), run_name="__main__")
    except Parsed:
        return
    except SystemExit as exc:
        raise AssertionError(f"argparse refused {target}: exit {exc.code}") from None
    finally:
        argparse.ArgumentParser.parse_args = original
        sys.argv = saved
    raise AssertionError(f"{target} never called parse_args")


def _invoke(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``verikit ARGV`` in-process in ``cwd``: (exit code as the real entry point gives it, output)."""
    from typer.testing import CliRunner

    from verikit.cli.main import app
    from verikit.errors import VerikitError

    previous = Path.cwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(app, argv, env={**env, "VERIKIT_MODEL": None, "VERIKIT_GALLERY": None,
                                                "COLUMNS": "200"})
    finally:
        os.chdir(previous)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        if isinstance(r.exception, VerikitError):
            return 1, f"{r.output}\nerror: {r.exception}"
        raise r.exception
    return r.exit_code, r.output


def _needs_missing_shared_data(text: str, sandbox: Path) -> bool:
    """The real data under ../shared/data is named but absent here: parse, do not run."""
    return "../shared/data" in text and not (sandbox.parent / "shared").exists()


def _program(words: list[str]) -> tuple[list[str], list[str]]:
    """(env assignments, the command's words)."""
    k = 0
    while k < len(words) and ASSIGNMENT.match(words[k]):
        k += 1
    return words[:k], words[k:]


def _check(block: Block, sandbox: Path, empty: Path) -> None:
    r = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
    assert r.returncode == 0, f"{block.where}: not valid shell: {r.stderr}"
    if block.mode == "skip":
        assert block.reason, f"{block.where}: doc-test: skip needs a reason"
        return
    mode = "parse-only" if _needs_missing_shared_data(block.text, sandbox) else block.mode
    prelude: list[str] = []
    for cmd in _commands(block):
        where = f"{block.where}+{cmd.line + 1}: {cmd.text.strip()[:120]}"
        if cmd.compound:
            if mode == "run":
                _sandbox_shell(cmd, prelude, sandbox, where)
            continue
        words = _argv("\n".join(prelude), cmd.text, sandbox)
        env_words, words = _program(words)
        if not words:  # VAR=value: later commands expand it
            prelude.append(cmd.text)
            continue
        env = dict(w.split("=", 1) for w in env_words)
        prog = words[0]
        verikit_argv = _verikit_argv(words)
        if verikit_argv is not None:
            try:
                _typer_parse(verikit_argv)
            except Exception as exc:  # the parser's UsageError and friends
                msg = exc.format_message() if hasattr(exc, "format_message") else exc
                raise AssertionError(f"{where}\n  does not parse: {msg}") from None
            if mode == "parse-only":
                empty.mkdir(parents=True, exist_ok=True)
                code, output = _invoke(verikit_argv, env, empty)
                assert code != 2, f"{where}\n  refused as a usage error (exit 2):\n{output[-1500:]}"
            else:
                code, output = _invoke(verikit_argv, env, sandbox)
                if cmd.expect_error:
                    expected = cmd.expect_error.removesuffix("...").rstrip(" ,")
                    assert code == 1 and expected in output, \
                        f"{where}\n  expected exit 1 with {expected!r}, got {code}:\n{output[-1500:]}"
                else:
                    assert code in EXIT_OK, (f"{where}\n  exit {code} in the docs sandbox (mark its block "
                                             f"<!-- doc-test: parse-only (why) --> if it cannot run on tiny "
                                             f"data here):\n{output[-2000:]}")
        elif prog in ("python", "python3") or prog.endswith("/python"):
            _python(words[1:], where, sandbox)
        elif prog == "make":
            targets = re.findall(r"^([A-Za-z0-9_.-]+):", (REPO / "Makefile").read_text(), re.M)
            for t in words[1:]:
                assert t in targets, f"{where}\n  the Makefile has no target {t!r}"
        elif prog == "pip" or words[:3] == [prog, "-m", "pip"]:
            paths = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
            for p in paths:
                assert (REPO / p).exists(), f"{where}\n  {p} does not exist"
        elif prog in SANDBOX_SHELL and mode == "run":
            _sandbox_shell(cmd, prelude, sandbox, where)


def _verikit_argv(words: list[str]) -> list[str] | None:
    if words[0] == "verikit":
        return words[1:]
    if "-m" in words:
        k = words.index("-m")
        if k + 1 < len(words) and words[k + 1] == "verikit.cli.main":
            return words[k + 2:]
    return None


def _python(args: list[str], where: str, sandbox: Path) -> None:
    if args[:2] == ["-m", "pytest"]:
        for p in (a for a in args[2:] if not a.startswith("-")):
            found = [q for q in REPO.glob(p)] if any(c in p for c in "*?[") else [REPO / p]
            assert found and all(q.exists() for q in found), f"{where}\n  {p} does not exist"
        return
    if args and (args[0] == "-m" or args[0].endswith(".py")):
        try:
            _argparse_parse(args, sandbox)
        except AssertionError as exc:
            raise AssertionError(f"{where}\n  {exc}") from None


def _sandbox_shell(cmd: Command, prelude: list[str], sandbox: Path, where: str) -> None:
    """Run mkdir / ln / cp / touch (also inside for loops) in the sandbox, where docs build inputs."""
    firsts = {w for w, eq in re.findall(r"(?:^|[;\n]|\bdo\b|\bthen\b)\s*([A-Za-z_.\-/]+)(=?)", _code(cmd.text))
              if not eq}  # VAR=... assignments are no commands
    allowed = SANDBOX_SHELL | {"for", "do", "done", "if", "then", "fi", "while"}
    if not firsts <= allowed:
        return  # not a command that builds inputs: syntax-checked only
    r = subprocess.run(["bash", "-c", "\n".join(prelude) + "\n" + cmd.text], capture_output=True, text=True,
                       cwd=sandbox, timeout=60)
    assert r.returncode == 0, f"{where}\n  failed in the docs sandbox: {r.stderr}"


# ----------------------------------------------------------------------------- the tests


def test_the_docs_have_commands_to_check():
    files = {b.path for b in ALL_BLOCKS}
    assert REPO / "README.md" in files and REPO / "docs" / "evaluation.md" in files
    assert sum(len(_commands(b)) for b in ALL_BLOCKS) >= 30


def test_the_checker_catches_what_it_must(sandbox, empty_dir, tmp_path):
    """The checks can fail: the plugin README's old commands, unknown options, unmarked slow blocks."""
    doc = tmp_path / "bad.md"
    for text, message in [
        ("verikit verify probe.jpg --identity alice --gallery g", "No such option: --identity"),
        ("verikit enroll photos/ --model runs/face --gallery g --detector haar", "exit 2"),
        ("verikit benchmark folder data/val --model runs/face --bogus 1", "No such option: --bogus"),
        ("verikit benchmark folder data/val", "Missing option '--model'"),
        ("verikit search photo.jpg --gallery nowhere", "exit 1 in the docs sandbox"),
        ("verikit search photo.jpg --gallery nowhere\n# error: something else entirely", "expected exit 1 with"),
        ("python benchmarks/bench_roc.py --no-such-flag", "argparse refused"),
        ("make no-such-target", "no target"),
    ]:
        doc.write_text(f"```bash\n{text}\n```\n")
        (block,) = _blocks(doc)
        block.path = REPO / "bad.md"
        with pytest.raises(AssertionError, match=re.escape(message)):
            _check(block, sandbox, empty_dir)
    doc.write_text("<!-- doc-test: parse-only (needs weights) -->\n```bash\nverikit verify p.jpg --claim a -g g\n```\n")
    (block,) = _blocks(doc)
    assert block.mode == "parse-only" and block.reason == "needs weights"
    block.path = REPO / "bad.md"
    _check(block, sandbox, empty_dir)  # fails on its missing inputs (exit 1): accepted


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.where)
def test_documented_commands_run(block, sandbox, empty_dir):
    _check(block, sandbox, empty_dir)
