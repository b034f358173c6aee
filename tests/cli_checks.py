"""What the hostile-input tests check of a command line's answer, in one place (imported by tests/test_hostile_*.py;
pytest puts tests/ on sys.path)."""

from __future__ import annotations

from typing import Sequence

from cnnlab.cli.main import main


def one_error_line(capsys, code, argv=None, ignore: Sequence[str] = ()) -> str:
    """The command exited 2 with exactly one `cnnlab: error:` line on stderr (lines starting with one of `ignore`,
    such as warnings or notes a test allows, aside) and no traceback; returns that line."""
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out, out.err
    assert code == 2, f"{argv!r} exited {code}: {out.err}"
    lines = [ln for ln in out.err.splitlines() if ln.strip() and not ln.startswith(tuple(ignore))]
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error:"), out.err
    return lines[0]


def run(argv):
    """main(argv), with argparse's own usage errors (SystemExit) as their exit code."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code
