"""MkDocs hooks (mkdocs.yml `hooks:`): add the pages that are generated from the code or live outside docs/.

- reference/config.md, reference/cli.md, reference/registries.md: written by scripts/gen_reference.py from the config
  schema, the argparse parser and the registries at every build, so the reference cannot drift from the code.
- results/**: the committed reports (results/<recipe>/report.md with its figures, runs.csv, answers.json, and the
  Lab 3 runs' files), served under the same paths, so the results page links to them as the README did.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
RESULT_SUFFIXES = {".md", ".png", ".svg", ".csv", ".json", ".yaml", ".log", ".html"}


def _gen_reference():
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_files(files: Files, config) -> Files:
    for path, text in _gen_reference().pages().items():
        files.append(File.generated(config, path, content=text))
    for path in sorted((REPO / "results").rglob("*")):
        if path.is_file() and path.suffix in RESULT_SUFFIXES:
            files.append(File.generated(config, path.relative_to(REPO).as_posix(), abs_src_path=str(path)))
    return files
