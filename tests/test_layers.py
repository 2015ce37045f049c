"""verikit's packages form layers: a package imports only from its own layer or lower ones.

The order says what depends on what (docs/../DESIGN.md's picture): the core types and files,
then models, then score-level evaluation, calibration, the gallery, the pipeline and training,
and the application layers on top. A new upward import fails here and must be designed, not
slipped in.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "verikit"
LAYERS = [
    {"errors", "structures", "atomic", "similarity", "interfaces", "registry", "io", "testing", "__init__",
     "image_input", "image_formats", "schemas", "threads"},
    {"models", "plugin_api"},
    {"evaluate", "segment", "classify"},
    {"calibrate"},
    {"index"},
    {"pipeline", "train", "report"},
    {"service", "server", "demo", "cli"},
]
LAYER_OF = {pkg: n for n, layer in enumerate(LAYERS) for pkg in layer}
# Known, deliberate exceptions: (importing module, imported package) with the reason.
ALLOWED = {
    # The benchmark runner normalises scores against a cohort, calibration's own maths.
    ("evaluate/benchmark.py", "calibrate"),
}


def _imports(path: Path) -> set[str]:
    rel = path.relative_to(ROOT)
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("verikit.")}
            continue
        if node.level:
            base = list(rel.parent.parts)[: len(rel.parent.parts) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.startswith("verikit."):
            target = node.module.split(".")[1:]
        else:
            continue
        if target:
            out.add(target[0])
    return out


def test_every_package_has_a_layer():
    packages = {p.name if p.is_dir() else p.stem for p in ROOT.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert packages <= set(LAYER_OF), f"add {sorted(packages - set(LAYER_OF))} to LAYERS"


def test_no_package_imports_from_a_higher_layer():
    bad = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for target in _imports(path):
            if target in LAYER_OF and LAYER_OF[target] > LAYER_OF[own] and (rel.as_posix(), target) not in ALLOWED:
                bad.append(f"{rel} imports {target}")
    assert not bad, "upward imports: " + "; ".join(sorted(bad))
