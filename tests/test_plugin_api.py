"""Plugins import verikit only through verikit.plugin_api, and it offers what it says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import verikit.plugin_api as api

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _verikit_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "verikit" or n.startswith("verikit.")]
    return found


PACKAGE_FILES = sorted(p for p in PLUGINS.glob("*/verikit_*/**/*.py"))


def test_there_are_first_party_plugin_packages_to_check():
    assert len(PACKAGE_FILES) >= 4


@pytest.mark.parametrize("path", PACKAGE_FILES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugin_packages_import_verikit_only_through_plugin_api(path):
    bad = [(line, mod) for line, mod in _verikit_imports(path) if mod != "verikit.plugin_api"]
    assert not bad, f"{path}: imports {bad}; plugins use verikit.plugin_api only"


def test_every_advertised_name_resolves():
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError):
        api.not_a_name  # noqa: B018


def test_trainable_protocols_follow_the_factory_attribute():
    def factory(argument=None, **options):
        return None

    assert not isinstance(factory, api.TrainableDetector)
    factory.train = lambda argument, **kwargs: {}
    assert isinstance(factory, api.TrainableDetector) and isinstance(factory, api.TrainableSegmenter)
