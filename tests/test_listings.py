"""The command line's listings: committed tables equal to what their registries generate, printed as pandas
would, and answered without importing torch."""
import subprocess
import sys

import pytest

from cryorl import listings


def test_the_committed_tables_are_what_the_registries_generate():
    for path, text in listings.generated_tables().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run python -m cryorl.listings --write"


def test_the_listings_match_the_registries():
    from cryorl.agents.registry import policy_names
    from cryorl.reporting.benchmark import DEFAULT_AGENTS

    assert listings.policy_names() == policy_names()
    assert listings.benchmark_agents() == DEFAULT_AGENTS


def test_every_data_option_names_every_registered_format():
    from cryorl.cli import build_parser
    from cryorl.formats import grid_formats

    names = [fmt.name for fmt in grid_formats()]
    assert listings.grid_format_names() == tuple(names)
    commands = build_parser()._subparsers._group_actions[0].choices
    helps = [action.help for command in commands.values() for action in command._actions if "--data" in
             action.option_strings]
    assert len(helps) >= 3 and all(", ".join(names) in text for text in helps), helps


@pytest.mark.parametrize("pattern", ["*", "resnet*", "no-such-model"])
def test_the_model_listing_prints_as_pandas_does(pattern):
    from cryorl.perception import list_models, model_table

    expected = model_table(list_models(pattern)).to_string(index=False, float_format=lambda v: f"{v:.3f}")
    assert listings.format_models(listings.perception_models(pattern)) == expected


WRAPPER = """
import runpy, sys
sys.argv = ["cryorl", *sys.argv[1:]]
try:
    runpy.run_module("cryorl", run_name="__main__")
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("torch", "pandas") if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [["--help"], ["perception", "models"], ["evaluate", "--help"],
                                  ["evaluate", "--episodes", "x"], ["benchmark", "--help"]])
def test_help_listings_and_usage_errors_import_neither_torch_nor_pandas(argv):
    result = subprocess.run([sys.executable, "-c", WRAPPER, *argv], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in result.stderr, result.stderr[-500:]


def test_building_the_parser_imports_no_torch():
    code = "import cryorl.cli, sys; cryorl.cli.build_parser(); print('torch' in sys.modules, 'pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr[-500:]


def test_import_cryorl_is_lazy_and_registers_the_environment():
    code = ("import sys, cryorl, gymnasium; assert 'pandas' not in sys.modules; "
            "env = gymnasium.make('CryoEM-v0'); print(type(env.unwrapped).__name__, cryorl.Atlas.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["CryoEMEnv", "Atlas"], result.stderr[-500:]


def _leaf_commands(parser, prefix=""):
    """(``data download``, its sub-parser) for every command that does work."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    yield from _leaf_commands(sub, full)
                else:
                    yield full, sub


def _plain(value):
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return str(value) if hasattr(value, "__fspath__") else value


def test_every_command_is_a_python_function_with_the_same_defaults():
    import importlib
    import inspect
    import re
    from pathlib import Path

    from cryorl.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `cryorl ([a-z ]+)` \| `([\w.]+)` \|$", readme, flags=re.M))
    commands = dict(_leaf_commands(build_parser()))
    assert sorted(table) == sorted(commands), "README's 'Every command from Python' table and the CLI differ"
    shared = 0
    for command, sub in commands.items():
        module, name = table[command].rsplit(".", 1)
        function = getattr(importlib.import_module(module), name)
        parameters = inspect.signature(function).parameters
        for action in sub._actions:
            default = parameters[action.dest].default if action.dest in parameters else inspect.Parameter.empty
            if default is inspect.Parameter.empty or action.default is None:
                continue
            assert _plain(default) == _plain(action.default), f"cryorl {command} --{action.dest}: {action.default!r}"
            shared += 1
    assert shared > 40, shared
