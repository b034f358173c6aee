"""Fuzzing the command line and configs (hypothesis): every bad input gets a one-line error naming the problem and a
non-zero exit, never a traceback. Counted in the README's reliability section."""

import string
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.cli.main import main
from conftest import count_bad_input
from cnnlab.training import config as C

FREE_TEXT = {"name", "out", "data.root", "train.device"}  # any string is a valid config value for these


FIELDS = {key: (tp, meta) for key, (tp, meta, _) in C.schema().items()}
KEYS = sorted(k for k in FIELDS if k not in FREE_TEXT)
word = st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=12)


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _bad_values(key):
    """A strategy of YAML texts that are wrong for `key`."""
    tp, meta = FIELDS[key]
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Union else tp
    junk = word.filter(lambda s: not _is_number(s) and yaml.safe_load(s) not in (True, False, None))
    if base in (int, float):
        options = [junk, st.just("[1, {a: 2}]"), st.just("{x: 1}")]
        low = meta.get("gt") if meta.get("gt") is not None else meta.get("min")
        if low is not None:
            options.append(st.floats(min_value=-1e6, max_value=low - 1e-3 if meta.get("min") is not None else low,
                                     allow_nan=False).map(repr))
        if meta.get("max") is not None:
            options.append(st.floats(min_value=meta["max"] + 1e-3, max_value=max(1e6, 10 * meta["max"])).map(repr))
        if base is int:
            options.append(st.floats(min_value=0.1, max_value=0.9).map(repr))
        return st.one_of(*options)
    if base is bool:
        return st.one_of(junk, st.integers(2, 99).map(str))
    if base is str:  # names from registries or choices: unknown names
        return word.map(lambda s: "zz" + s)
    if typing.get_origin(base) in (list, typing.List):
        return st.one_of(st.just("{a: 1}"), st.just("[abc, def]") if typing.get_args(base)[0] is float
                         else st.just("{a: 1}"))
    return st.just("[1, 2]")  # model.options must be a mapping


@st.composite
def bad_override(draw):
    if draw(st.booleans()):
        key = draw(st.sampled_from(KEYS))
        return f"{key}={draw(_bad_values(key))}"
    section = draw(st.sampled_from(["", "data.", "optim.", "train.", "batch.", "zz."]))
    key = section + draw(word.filter(lambda w: section + w not in FIELDS and w not in ("data", "optim", "train",
                                                                                        "batch", "augment", "model",
                                                                                        "schedule")))
    return f"{key}={draw(st.integers())}"


def _one_line_error(capsys, argv, code):
    count_bad_input()
    out = capsys.readouterr()
    assert code != 0, f"{argv} was accepted"
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    return lines[0]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(override=bad_override())
def test_bad_config_overrides(override, capsys):
    code = main(["train", "--print-config", override])
    line = _one_line_error(capsys, override, code)
    key = override.split("=", 1)[0]
    assert line.startswith("cnnlab: error:") and (key in line or key.split(".")[0] in line), line


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=string.printable, max_size=40))
def test_bad_yaml_files(text, tmp_path_factory, capsys):
    try:
        data = yaml.safe_load(text)
        C.load_config(None, base=data if isinstance(data, dict) else None)
        if isinstance(data, dict) or data is None:
            return  # a valid (or empty) config: not a bad input
    except Exception:
        pass
    f = tmp_path_factory.mktemp("y") / "run.yaml"
    f.write_text(text)
    code = main(["train", "--print-config", "-c", str(f)])
    assert "cnnlab: error:" in _one_line_error(capsys, text, code)


@pytest.mark.parametrize("argv", [
    ["train", "--resume", "/nonexistent/run"],
    ["evaluate", "/nonexistent/run"],
    ["predict", "/nonexistent/run"],
    ["train", "--bogus-flag"],
    ["no-such-command"],
])
def test_bad_command_lines(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    _one_line_error(capsys, argv, code)


junk_number = st.one_of(st.integers(max_value=0).map(str), word.filter(lambda s: not _is_number(s)),
                        st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)).map(repr))
junk_shape = st.one_of(word, st.lists(st.integers(-5, 0), min_size=1, max_size=4).map(lambda v: "x".join(map(str, v))))
TEMPLATES = [
    lambda d: ["calc", "conv", "--input", d(junk_shape), "--filters", "8", "--size", "3"],
    lambda d: ["calc", "conv", "--input", "32x32x3", "--filters", d(junk_number), "--size", "3"],
    lambda d: ["calc", "fc", "--input", d(junk_shape), "--units", "10"],
    lambda d: ["calc", "fc", "--input", "7x7x512", "--units", d(junk_number)],
    lambda d: ["calc", "rf", "--layers", d(junk_number), "--size", "3"],
    lambda d: ["summary", "zz" + d(word)],
    lambda d: ["summary", "simplenn", "--input", d(junk_shape)],
    lambda d: ["data", "info", "zz" + d(word)],
    lambda d: ["sweep", f"/nonexistent/{d(word)}.yaml"],
    lambda d: ["find-lr", f"model.name=zz{d(word)}"],
    lambda d: ["evaluate", f"/nonexistent/{d(word)}"],
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), template=st.sampled_from(TEMPLATES))
def test_bad_arguments_to_every_command(data, template, capsys):
    argv = template(data.draw)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    _one_line_error(capsys, argv, code)
