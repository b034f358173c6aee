"""The documentation site: `mkdocs build --strict` succeeds (no broken link, missing page or bad reference), the
reference pages generated at build time name every config key, command and registered name (the expected lists are
read from the code here, not from the generator), and the cheap command examples in the guides run and print what
their comments say."""

from __future__ import annotations

import argparse
import html
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.cli.main import build_parser, main as cnnlab_main

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("mkdocstrings", reason="the docs extra is not installed: pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(out)], capture_output=True, text=True, cwd=REPO,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def page_text(site: Path, path: str) -> str:
    """The visible text of a built page (tags dropped, entities decoded)."""
    raw = (site / path / "index.html").read_text(encoding="utf-8")
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def test_site_builds_strict_with_every_nav_page(site):
    for page in ("getting-started", "labs", "guide/data", "guide/models", "guide/training", "guide/experiments",
                 "guide/tuning", "guide/analysis", "guide/performance", "results", "reliability", "architecture",
                 "reference/cli", "reference/config", "reference/registries", "reference/python"):
        assert (site / page / "index.html").is_file(), page
    # the committed reports are served where the results table links them
    assert (site / "results" / "04-lr-sweep" / "report" / "index.html").is_file()


def test_config_reference_lists_every_key_with_its_default(site):
    from cnnlab.training.config import schema
    text = page_text(site, "reference/config")
    keys = schema()
    assert len(keys) > 60
    for key in keys:  # each key is the first cell of its own row
        assert re.search(rf"^{re.escape(key)}$", text, re.M), f"config key {key} missing from the config reference"
    # a few rows whole: key, default and range as the schema enforces them
    assert re.search(r"optim\.lr\s+float\s+0\.01\s+> 0, ≤ 1,000,000", text)
    assert re.search(r"batch\.mode\s+str\s+'triangular'\s+`?triangular", text)


def _commands(parser: argparse.ArgumentParser, prefix: str = "cnnlab"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


def test_cli_reference_lists_every_command_and_option(site):
    text = page_text(site, "reference/cli")
    listed = list(_commands(build_parser()))
    assert len(listed) > 25
    for command, sub in listed:
        assert re.search(rf"^{re.escape(command)}¶?$", text, re.M), f"{command} has no section in the CLI reference"
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in text, f"{command} {flag} missing from the CLI reference"


def test_registry_reference_lists_every_registered_name(site):
    from cnnlab.analysis.range_tests import LR_RULES
    from cnnlab.data import DATASETS
    from cnnlab.data.augment import AUGMENTATIONS
    from cnnlab.experiments.answers import ANSWERS
    from cnnlab.experiments.figures import FIGURES
    from cnnlab.models import MODELS, model_info
    from cnnlab.training.losses import LOSSES
    from cnnlab.training.optim import OPTIMIZERS
    from cnnlab.training.schedules import SCHEDULES
    text = page_text(site, "reference/registries")
    for registry in (MODELS, DATASETS, AUGMENTATIONS, OPTIMIZERS, SCHEDULES, LOSSES, FIGURES, ANSWERS, LR_RULES):
        for name in registry.names():
            # the first cell of a row (or an optimizer's heading)
            assert re.search(rf"^{re.escape(name)}¶?$", text, re.M), f"{registry.kind} {name} missing"
    for name in MODELS.names():  # each model's parameter count, as `cnnlab models` computes it
        assert f"{model_info(name)['params']:,}" in text, name
    for name in OPTIMIZERS.names():  # and each optimizer's update equations
        for line in OPTIMIZERS.get(name).equations:
            assert line in text, (name, line)


def test_python_reference_is_rendered_by_mkdocstrings(site):
    from cnnlab import api
    text = page_text(site, "reference/python")
    for name in ("load_dataset", "create_model", "train"):
        assert hasattr(api, name) and name in text


# -- the examples in the guides that run in a second ------------------------------------------------------------
def _examples(doc: str, prefix: str):
    """(argv, comment) for every `cnnlab ...` line of the page's bash blocks that starts with `prefix`."""
    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith(prefix):
                command, _, comment = line.partition("  # ")
                yield shlex.split(command)[1:], comment.strip()


CALC = list(_examples("guide/models.md", "cnnlab calc "))


def test_the_guides_have_calc_examples():
    assert len(CALC) >= 8


@pytest.mark.parametrize("argv, comment", CALC, ids=[" ".join(a) for a, _ in CALC])
def test_calc_example_prints_what_its_comment_says(argv, comment, capsys):
    assert cnnlab_main(argv) == 0
    out = capsys.readouterr().out
    # every figure the comment quotes (102,764,544; 8.41x; 28x28x416; 303.5; 81x81) is in the output
    figures = [f.rstrip("x") for f in re.findall(r"\d[\d,.]*(?:x\d+)*x?", comment) if len(f) > 1]
    for figure in figures:
        assert figure in out, (argv, figure)


def test_summary_example_gives_the_documented_parameter_count(capsys):
    line = next(c for a, c in _examples("labs.md", "cnnlab summary simplenn ") if a == ["summary", "simplenn"])
    assert "82,030" in line
    assert cnnlab_main(["summary", "simplenn"]) == 0
    assert "82,030" in capsys.readouterr().out


@pytest.mark.parametrize("doc", ["guide/models.md", "guide/data.md"])
def test_python_examples_of_the_guides_run(doc, shared_data, session_cache, monkeypatch):
    """The Python blocks of a guide, in order, in one namespace, against the real data (docs/api.md has its own)."""
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    code = "\n".join(re.findall(r"```python\n(.*?)```", (REPO / "docs" / doc).read_text(encoding="utf-8"), re.S))
    assert code
    ns = {}
    exec(compile(code.replace('"../shared/data"', repr(str(shared_data))), doc, "exec"), ns)
    if doc == "guide/data.md":
        assert len(ns["ds"].train) == 45000 and tuple(ns["x"].shape) == (128, 3, 32, 32)
    else:
        assert ns["model"].input_shape == (3, 32, 32)
