"""Registry: lookup, suggestions, duplicates, broken entry points, VERIKIT_LOAD_PLUGINS, listing status."""

from __future__ import annotations

from importlib import metadata

import pytest

from verikit.errors import PluginError
from verikit.registry import Registry, parse_spec


def _ep(name: str, value: str, dist: str = "fake-dist", group: str = "verikit.detectors"):
    ep = metadata.EntryPoint(name, value, group)

    class _Dist:
        version = "9.9"

        def __init__(self, n):
            self.name = n
    # EntryPoint is immutable; attach the distribution the way importlib.metadata does.
    return ep._for(_Dist(dist)) if hasattr(ep, "_for") else ep


@pytest.fixture()
def fake_eps(monkeypatch):
    """Make discovery see exactly the entry points a test lists."""
    listed: list = []
    monkeypatch.setattr("verikit.registry.metadata.entry_points", lambda group: [e for e in listed if e.group == group])
    return listed


def test_parse_spec():
    assert parse_spec("haar:frontalface_alt") == ("haar", "frontalface_alt")
    assert parse_spec("faiss:IVF16,Flat") == ("faiss", "IVF16,Flat")
    assert parse_spec(" center ") == ("center", None)
    with pytest.raises(PluginError, match="empty"):
        parse_spec("  ")


def test_unknown_name_suggests_and_lists_installed(fake_eps):
    reg = Registry("detector")
    reg.register("cascade", lambda *a, **k: "H")
    with pytest.raises(PluginError, match=r"unknown detector 'cascad'; did you mean cascade\? \(installed: cascade\)"):
        reg.create("cascad")


def test_duplicate_names_raise(fake_eps):
    fake_eps += [_ep("x", "mod_a:f", "dist-a"), _ep("x", "mod_b:f", "dist-b")]
    with pytest.raises(PluginError, match="registered twice"):
        Registry("detector").names()
    fake_eps.clear()
    reg = Registry("detector")
    reg.register("y", lambda: 1)
    with pytest.raises(PluginError, match="already registered"):
        reg.register("y", lambda: 2)


def test_broken_entry_points_have_a_status_and_a_clear_error(fake_eps):
    fake_eps += [_ep("gone", "verikit_no_such_module_xyz:create", "broken-dist"),
                 _ep("bad", "verikit.errors:NoSuchFactory", "broken-dist"),
                 _ep("good", "verikit.testing:synthetic_images", "good-dist")]
    reg = Registry("detector")
    assert reg.status("good") == "ok"
    assert "failed to import" in reg.status("gone") and "pip install" in reg.status("gone")
    assert "is broken" in reg.status("bad") and "AttributeError" in reg.status("bad")
    with pytest.raises(PluginError, match="from broken-dist failed to import"):
        reg.get("gone")
    rows = {i.name: i for i in reg.infos()}
    assert rows["gone"].distribution == "broken-dist" and rows["gone"].version == "9.9"


def test_a_plugin_import_error_is_quoted_on_one_capped_line(fake_eps, tmp_path, monkeypatch):
    # A plugin whose import dies with a long multi-line message (a compiled extension's loader error).
    (tmp_path / "verikit_noisy_plugin.py").write_text(
        "raise ImportError('libfoo.so: cannot open shared object file\\n' + 'x' * 2000)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_eps += [_ep("noisy", "verikit_noisy_plugin:create", "noisy-dist")]
    with pytest.raises(PluginError) as err:
        Registry("detector").get("noisy")
    message = str(err.value)
    assert "\n" not in message and "libfoo.so: cannot open shared object file x" in message
    assert len(message) < 500  # the 2,000-character tail is cut, the hint after it is kept
    assert "pip install" in message


def test_load_plugins_env_restricts_distributions(fake_eps, monkeypatch):
    fake_eps += [_ep("a", "verikit.testing:synthetic_images", "Dist_A"),
                 _ep("b", "verikit.testing:synthetic_images", "dist-b"),
                 _ep("core", "verikit.testing:synthetic_images", "verikit")]
    monkeypatch.setenv("VERIKIT_LOAD_PLUGINS", "dist-a")  # canonical names: Dist_A == dist-a
    assert Registry("detector").names() == ["a", "core"]
    monkeypatch.setenv("VERIKIT_LOAD_PLUGINS", "")
    assert Registry("detector").names() == ["core"]  # the core's built-ins are always on


def test_temporary_registration_is_undone_and_bad_options_are_named(fake_eps):
    reg = Registry("detector")

    def factory(arg=None, *, k=1):
        return (arg, k)

    with reg.temporary("t", factory):
        assert reg.create("t:x", k=2) == ("x", 2)
        assert reg.infos()[0].distribution == "(in-process)"
        with pytest.raises(PluginError, match="does not accept these options"):
            reg.create("t", nope=1)
    assert reg.names() == []


def test_examples_are_the_declared_list_else_the_one_example(fake_eps):
    reg = Registry("detector")

    def plain(arg=None):
        return arg

    def several(arg=None, **options):
        return arg

    several.example = ("s:a", {"k": 1})
    several.examples = [("s:a", {"k": 1}), ("s:b", {})]
    with reg.temporary("p", plain), reg.temporary("s", several):
        assert reg.examples("p") == [("p", {})]
        assert reg.examples("s") == [("s:a", {"k": 1}), ("s:b", {})]
        reg.examples("s")[0][1]["k"] = 2  # a copy: the factory's declaration is not changed
        assert several.examples[0][1] == {"k": 1}
