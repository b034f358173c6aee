"""`cnnlab models / summary / calc / sanity` end to end through cnnlab.cli.main, with user errors as one line and
exit status 2."""

from __future__ import annotations

import csv

import pytest

import cnnlab.cli.main as cli_main


@pytest.fixture
def cnnlab(capsys):
    """Run `cnnlab ARGS...` in-process through the full parser; returns (exit status, stdout, stderr)."""

    def run(*argv):
        try:
            code = cli_main.main([str(a) for a in argv])
        except SystemExit as e:  # argparse errors
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_models_lists_registry_with_params(cnnlab):
    code, out, _ = cnnlab("models")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "82,030" in lines["simplenn"] and "3x32x32" in lines["simplenn"]
    assert "269,722" in lines["resnet20"] and "143,667,240" in lines["vgg19"] and "1x28x28" in lines["lenet5"]


def test_summary_table_and_csv(cnnlab, tmp_path):
    path = tmp_path / "simplenn.csv"
    code, out, _ = cnnlab("summary", "simplenn", "--csv", path)
    assert code == 0
    assert "TOTAL" in out and "82,030" in out and "716,328" in out and "FLOPs (= 2 x MACs): 1,432,656" in out
    rows = list(csv.DictReader(path.open()))
    assert rows[-1]["name"] == "TOTAL" and rows[-1]["params"] == "82030" and rows[-1]["macs"] == "716328"


def test_summary_options_input_and_dtype(cnnlab):
    code, out, _ = cnnlab("summary", "resnet20", "shortcut=B", "--input", "1x28x28", "--dtype", "float16",
                          "--batch-size", "2")
    assert code == 0
    assert "resnet20: input 2x1x28x28" in out and "Total params: 272,186" in out and "in float16" in out
    code, out, _ = cnnlab("summary", "mlp", "hidden=[500,300]", "input_dropout=0.2", "--input", "1x28x28")
    # 784*500+500 + 500*300+300 + 300*10+10
    assert code == 0 and f"Total params: {784 * 500 + 500 + 500 * 300 + 300 + 3010:,}" in out


def test_summary_vgg19_at_224_is_fast_on_meta(cnnlab):
    code, out, _ = cnnlab("summary", "vgg19")
    assert code == 0 and "143,667,240" in out and "19,632,062,464" in out


@pytest.mark.parametrize("argv,needle", [
    (("summary", "resnet21"), "unknown model 'resnet21'"),
    (("summary", "simplenn", "bogus=1"), "valid options: num_classes, in_channels, input_size, activation"),
    (("summary", "simplenn", "batchnorm"), "is not of the form key=value"),
    (("summary", "mlp", "hidden=500,300"), "write a list as YAML, e.g. hidden=[500,300]"),
    (("summary", "simplenn", "--input", "3x32x30"), "square"),
    (("summary", "simplenn", "--input", "32x32"), "--input (CxHxW)"),
    (("summary", "simplenn", "--input", "3x8x8"), "too small; use input_size >= 12"),
    (("summary", "simplenn", "--dtype", "int3"), "--dtype 'int3'"),
    (("summary", "simplenn", "num_classes=0"), "num_classes=0 must be an integer >= 1"),
    (("calc", "conv", "--input", "32x32x3", "--filters", "8", "--size", "40"), "does not fit"),
    (("calc", "conv", "--input", "32x32x3", "--filters", "8", "--size", "5", "--padding", "full"), "--padding"),
    (("calc", "fc", "--input", "7x7", "--units", "10"), "--input (HxWxC)"),
    (("sanity", "inception_naive"), "bare module"),
])
def test_user_errors_are_one_line_exit_2(cnnlab, argv, needle):
    code, out, err = cnnlab(*argv)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_calc_commands_show_working(cnnlab):
    code, out, _ = cnnlab("calc", "conv", "--input", "32x32x3", "--filters", "8", "--size", "5", "--stride", "1",
                          "--padding", "0")
    assert code == 0 and "= 28" in out and "8·76 = 608" in out and "470,400" in out
    code, out, _ = cnnlab("calc", "fc", "--input", "7x7x512", "--units", "4096")
    assert code == 0 and "102,764,544" in out
    code, out, _ = cnnlab("calc", "rf", "--layers", "3", "--size", "3")
    assert code == 0 and "3·3 − 3 + 1 = 7" in out and "49" in out
    code, out, _ = cnnlab("calc", "separable", "--input", "112x112x64", "--filters", "128", "--size", "3")
    assert code == 0 and "8.41x" in out
    code, out, _ = cnnlab("calc", "inception", "--input", "28x28x192")
    assert code == 0 and "28x28x416" in out and "28x28x256" in out and "120,422,400" in out
    code, out, _ = cnnlab("calc", "vgg19")
    assert code == 0 and "143,667,240" in out and "CONV3-64" in out
    code, out, _ = cnnlab("calc")
    assert code == 2 and "conv" in out  # no question: the help is printed


def test_sanity_synthetic_batch(cnnlab):
    code, out, _ = cnnlab("sanity", "resnet20", "zero_init_residual=true", "--batch-size", "64")
    assert code == 0 and "ln(10) = 2.3026" in out and "synthetic" in out and "OK" in out


def test_sanity_real_batch(cnnlab, shared_data):
    code, out, err = cnnlab("sanity", "lenet5", "--data-root", shared_data, "--batch-size", "128")
    assert code == 0, err
    assert "fashion-mnist training images" in out and "ln(10) = 2.3026" in out
