"""What users reach for on the command line: --download wherever data is loaded, one spelling of fashion-mnist,
did-you-mean for model options, --version."""

from __future__ import annotations

import argparse

import pytest

from cnnlab import __version__
from cnnlab.cli.main import build_parser, main


def _subparsers(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:  # argparse offers no public walk over sub-commands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subparsers(sub, (*prefix, name))


def test_every_command_that_takes_a_data_root_also_takes_download():
    commands = {path: sub for path, sub in _subparsers(build_parser())}
    with_root = [p for p, sub in commands.items() if any("--data-root" in a.option_strings for a in sub._actions)]
    assert {("train",), ("evaluate",), ("predict",), ("export",), ("sweep",), ("tune",), ("data", "info")} \
        <= set(with_root)
    for path in with_root:
        if path == ("sanity",):  # its --data-root only switches a synthetic batch for a real one
            continue
        assert any("--download" in a.option_strings for a in commands[path]._actions), path


def test_the_data_not_found_advice_is_an_option_of_train(tmp_path, capsys):
    code = main(["train", "--print-config", "data.name=fashion-mnist"])
    assert code == 0
    capsys.readouterr()
    code = main(["train", "data.name=fashion-mnist", "--data-root", str(tmp_path / "none"), f"out={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "--download" in err and err.startswith("cnnlab: error: fashion-mnist not found")
    assert main(["train", "--download", "--print-config", "data.name=fashion-mnist"]) == 0
    assert "download: true" in capsys.readouterr().out


def test_dataset_names_are_spelled_one_way_and_accepted_both_ways(capsys):
    assert main(["train", "--print-config", "data.name=zz"]) == 2
    err = capsys.readouterr().err
    assert "fashion-mnist" in err and "fashion_mnist" not in err
    assert main(["train", "--print-config", "data.name=fashion_mnist"]) == 0


@pytest.mark.parametrize("model,typo,fix", [("simplenn", "batchnorm", "batch_norm"),
                                            ("resnet20", "shortcutt", "shortcut")])
def test_model_option_typos_get_a_did_you_mean(model, typo, fix, capsys):
    assert main(["train", "--print-config", f"model.name={model}", f"model.options.{typo}=1"]) == 2
    assert f"did you mean {fix!r}" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"cnnlab {__version__}"
