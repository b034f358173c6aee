"""Write the Results table of the documentation site (docs/results.md) from the committed reports: one row per
course question, from the `answers.json` that `cnnlab report` writes beside each results/<spec>/report.md.

    .venv/bin/python scripts/readme_results.py          # rewrite the table between the markers in docs/results.md
    .venv/bin/python scripts/readme_results.py --check  # exit 1 if docs/results.md is not what the reports say

The site serves results/ under the same paths (scripts/docs_hooks.py), so the table's links work there as they did
in the README.
Each row is short: the answer's first sentence, its conclusion (cut at about 40 words), linked to the report that
holds the rest. Nothing in the table is written by hand: the sentence is the report's own. Recipes whose cpu profile
has not been run yet are listed as such, so the table never hides a question. The questions answered without a
recipe run (true/false, computations: results/assignments/<assignment>/answers.json) follow, one row each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


WORDS = 40  # at most this many words of an answer in a row; the rest is in the linked report


def first_sentence(text: str, words: int = WORDS) -> str:
    """The answer's first sentence (its conclusion; a period inside parentheses or a number does not end it), cut
    to `words` words with an ellipsis."""
    depth, end = 0, len(text)
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "." and depth == 0 and (i + 1 == len(text) or text[i + 1] == " ") and i > 0:
            end = i + 1
            break
    sentence = text[:end].strip()
    cut = sentence.split()
    return sentence if len(cut) <= words else " ".join(cut[:words]).rstrip(",;:") + " …"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def rows(repo: Path = REPO) -> list:
    out = []
    for spec in sorted((repo / "experiments").glob("*.yaml")):
        stem = spec.stem
        folder = repo / "results" / stem
        answers = folder / "answers.json"
        if not answers.is_file():
            questions = [a.get("question", "") for a in (yaml.safe_load(spec.read_text()).get("report") or {})
                         .get("answers", [])]
            for q in questions:
                out.append([q, "not run yet: its cpu profile has not been run on this machine", f"`{spec.name}`",
                            "cpu", ""])
            continue
        for source in json.loads(answers.read_text()):
            done = f"{source['runs_done']} of {source['runs']} runs" if source["runs_done"] < source["runs"] else \
                (f"{source['runs']} runs" if source["runs"] != 1 else "1 run")
            for a in source["answers"]:
                link = f"[{folder.name}]({folder.relative_to(repo).as_posix()}/report.md)"
                out.append([a["question"] or a["kind"], first_sentence(a["text"]), link, "cpu",
                            f"{_minutes(source['wall_s'])} ({done})"])
    for answers in sorted((repo / "results" / "assignments").glob("*/answers.json")):
        doc = json.loads(answers.read_text())
        folder = answers.parent.relative_to(repo).as_posix()
        name = answers.parent.name
        for q in doc.get("questions", []):
            if q.get("kind") == "recipe":
                continue  # its row is the recipe's, above
            out.append([f"{q['id']}: {q.get('question', '')}".rstrip(": "), first_sentence(q.get("answer", "")),
                        f"[{name}]({folder}/{name}.md)", q.get("kind", ""), ""])
    return out


def rebuild_line(repo: Path = REPO) -> str:
    """Which committed reports carry their runs' files (report_runs/) and so rebuild in a clean clone, and which
    predate them and wait for a rerun of their cpu profile (scripts/run-cpu-profiles.sh STEM)."""
    done, waiting = [], []
    for spec in sorted((repo / "experiments").glob("*.yaml")):
        folder = repo / "results" / spec.stem
        (done if (folder / "report_runs").is_dir() else waiting).append(spec.stem)
    return (f"Rebuild from the committed files alone (`cnnlab report experiments/STEM.yaml --profile cpu --out "
            f"results/STEM/report.html`): {', '.join(done) or 'none yet'}. Waiting for a rerun of their cpu "
            f"profile, so that their run files are committed: {', '.join(waiting) or 'none'}.")


def section(repo: Path = REPO) -> str:
    lines = [START, "", rebuild_line(repo), "", "| question | answer, its conclusion (the rest in the report) | evidence | profile | training time |",
             "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows(repo)]
    return "\n".join(lines + ["", END])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that docs/results.md is up to date")
    args = ap.parse_args()
    readme = REPO / "docs" / "results.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"docs/results.md has no {START} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + section() + tail
    if args.check:
        if new != text:
            print("docs/results.md's table differs from results/*/answers.json: run scripts/readme_results.py",
                  file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    print(f"wrote the Results section of {readme} ({len(rows())} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
