"""The shape of the package: no import cycles, a cheap import, every option documented."""

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cryocare
from cryocare.cli import build_parser

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
    for name in cryocare.__all__:
        assert getattr(cryocare, name) is not None


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_and_shows_its_default(command):
    parser = _subcommands()[command]
    text = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.option_strings or action.dest}: no help"
        flag = isinstance(action, argparse._StoreTrueAction | argparse._StoreConstAction)
        positional_or_required = not action.option_strings or action.required
        if not flag and not positional_or_required:
            assert "default" in parser._get_formatter()._get_help_string(action), \
                f"{command} {action.option_strings}: no default shown"
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
