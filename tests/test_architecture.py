"""The shape of the package: no import cycles, a cheap import, every option documented."""

import argparse
import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cryocare
from cryocare.cli import build_parser
from cryocare.cli.options import HelpFormatter

SOURCE = Path(cryocare.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every import between cryocare's modules, also those inside functions.

    ``from . import x`` counts as importing both the package and ``x``, as
    Python runs it.
    """
    modules = {_module_name(p): p for p in SOURCE.rglob("*.py")}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1]
                                    + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_cryocare_imports_itself_back():
    graph = import_graph()
    assert len(graph) > 30 and "cryocare.cli.commands" in graph
    assert cycles(graph) == []


def test_importing_cryocare_and_its_command_line_loads_no_deep_learning_framework():
    code = ("import sys, cryocare, cryocare.cli, cryocare.predict, cryocare.recipe, "
            "cryocare.modelfiles, cryocare.relion, cryocare.configjobs; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'torch', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_napari_plugin_imports_without_napari_qt_or_a_deep_learning_framework():
    # Only its widget module (cryocare.napari._widget) imports napari and Qt; Keras comes
    # when a preview or a fine-tuning runs.
    code = ("import sys, cryocare.napari; print(sorted(m for m in ('napari', 'qtpy', 'PyQt6', "
            "'PyQt5', 'PySide6', 'keras', 'tensorflow', 'torch', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_public_face_lists_what_a_notebook_needs():
    names = set(dir(cryocare))
    assert {"read", "write", "read_pair", "sample_pairs", "CareConfig", "Recipe", "CAREModel",
            "train", "denoise", "load_model", "segment_otsu", "simulate_tomogram"} <= names


@pytest.mark.parametrize("name", sorted(cryocare._LAZY))
def test_every_lazy_name_is_the_attribute_of_the_module_it_names(name):
    module, attribute = cryocare._LAZY[name]
    assert getattr(cryocare, name) is getattr(importlib.import_module(f"cryocare.{module}"),
                                              attribute)
    assert name in dir(cryocare) and name in cryocare.__all__


def test_an_unknown_public_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'predict_tiled'"):
        cryocare.predict_tiled  # noqa: B018
    assert not hasattr(cryocare, "Denoise")
    assert "predict_tiled" not in dir(cryocare)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An option's help as ``--help`` prints it (before line wrapping)."""
    return parser._get_formatter()._expand_help(action)


def test_the_help_formatter_appends_the_real_default_once():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="tile size")
    parser.add_argument("--mode", default="fast", choices=("fast", "slow"), help="how")
    parser.add_argument("--mask", help="mask file")
    parser.add_argument("--budget", help="time budget (default: the recipe's)")
    parser.add_argument("--flag", action="store_true", help="switch it on")
    parser.add_argument("--need", required=True, help="needed")
    parser.add_argument("input", help="the input")
    shown = {a.dest: _shown_help(parser, a) for a in parser._actions}
    assert shown["size"] == "tile size (default: 64)"
    assert shown["mode"] == "how (default: fast)"
    assert shown["mask"] == "mask file (default: none)"
    assert shown["budget"] == "time budget (default: the recipe's)"  # not a second one
    assert shown["flag"] == "switch it on"
    assert shown["need"] == "needed" and shown["input"] == "the input"


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_that_states_its_default_once_and_truly(command):
    parser = _subcommands()[command]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        where = f"{command} {action.option_strings or action.dest}"
        assert action.help, f"{where}: no help"
        shown = _shown_help(parser, action)
        flag = isinstance(action, argparse._StoreConstAction | argparse.BooleanOptionalAction)
        if flag or not action.option_strings or action.required:
            continue
        written = argparse.HelpFormatter(parser.prog)._expand_help(action)  # as written
        # "default" as a word ("default_pipeline.star" is a file name, not a default).
        assert re.search(r"\bdefault\b", shown), f"{where}: no default shown: {shown!r}"
        if not re.search(r"\bdefault\b", written):  # the formatter adds the parser's own
            value = "none" if action.default is None else str(action.default)
            assert shown == f"{written} (default: {value})", f"{where}: {shown!r}"
            continue
        assert shown == written, f"{where}: a second default added: {shown!r}"
        if action.default is not None and action.default is not False:  # by hand: the real one
            assert re.search(rf"\bdefault:? {re.escape(str(action.default))}\b", shown), \
                f"{where}: the help names another default than {action.default!r}"
    assert "-o OUTPUT, --output OUTPUT" in text or command == "demo" or "--output" not in text


@pytest.mark.parametrize("command", ["denoise", "train", "predict"])
def test_star_and_config_modes_are_in_the_help(command):
    text = _subcommands()[command].format_help()
    assert "--star" in text and "--project" in text
    assert "--config" in text


def test_the_same_option_has_the_same_choices_everywhere():
    seen = {}
    for parser in _subcommands().values():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in ("--precision", "--memory", "--tta", "--tiles", "--device",
                            "--init", "--time-budget"):
                    seen.setdefault(flag, set()).add((tuple(action.choices or ()), action.type))
    assert seen["--precision"] and all(len(v) == 1 for v in seen.values()), seen
