"""The Python API is a user interface too: wrong arguments to every public name of `cnnlab.api`, generated from the
signatures, each answered by a CnnlabError / TypeError / ValueError that names the argument; never an
AttributeError, KeyError, IndexError or RuntimeError from inside, and never an allocation that cannot fit.

The generated cases: for each parameter of each public callable (`api.__all__`), with every other argument valid,
None where it is required, a string where a number, list, flag, callable or object is expected, a number where a
string or path is expected, -1, 2**64, NaN and infinity where a number is expected, an empty list where a list is
required, a dict where an object is expected, a list holding a wrong item, and a string outside the choices. A value
that the argument's contract documents as accepted (a str where a path is taken, a dict where a dict converts, a
single "key=value" string for `overrides`) is not generated. Each hostile call counts once (conftest.py)."""

from __future__ import annotations

import inspect
import math
import re
import resource

import pytest
import torch

from cnnlab import api
from cnnlab.errors import CnnlabError
from conftest import count_bad_input

ALLOWED = (CnnlabError, TypeError, ValueError)
PUBLIC = [n for n in api.__all__ if n != "CnnlabError"]


def _init(obj):
    """The function whose signature (and contract) the public name has: a class's __init__ (or dataclass)."""
    return obj.__init__ if inspect.isclass(obj) and hasattr(obj.__init__, "accepts") else obj


def _params(name):
    return [p for p in inspect.signature(api.__dict__[name]).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _shape(p) -> str:
    """The annotation reduced to one word: int, float, bool, str, list, dict, callable, or object."""
    ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
    ann = re.sub(r"^Optional\[(.*)\]$", r"\1", ann or "")
    if not ann and p.default is not inspect.Parameter.empty and p.default is not None:
        return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(p.default), "object")
    for prefix, shape in (("Sequence", "list"), ("List", "list"), ("Tuple", "list"), ("Dict", "dict"),
                          ("Callable", "callable"), ("Union[int, str", "int")):
        if ann.startswith(prefix):
            return shape
    return ann if ann in ("int", "float", "bool", "str") else "object"


HOSTILE = {  # shape -> values that are wrong for every argument of that shape
    "int": ["x", -1, 2**64, 1.5, True],
    "float": ["x", float("nan"), float("inf"), -float("inf")],
    "bool": ["yes", 2],
    "str": [3, b"bytes", ["x"]],
    "list": [3, {"a": 1}, [object()]],
    "dict": ["x", ["x"], 3],
    "callable": ["x", 3],
    "object": [3, 2.5, [object()], object()],
}


def _contract(fn, p) -> str:
    """What the parameter accepts, in words (as its docstring lists it); '' for the dataclasses' fields."""
    a = getattr(_init(fn), "accepts", {}).get(p.name)
    return a.text if a is not None else ""


def _documented(fn, p, value) -> bool:
    """A value the parameter's contract says it accepts: a str or path where a path (run folder, spec) is taken, a
    dict where a dict converts, one override string."""
    text = _contract(fn, p)
    if isinstance(value, str):
        return any(w in text for w in ("path", "folder", "string", "name")) and "one of" not in text
    if isinstance(value, dict):
        return "dict" in text
    return False


def cases():
    for name in PUBLIC:
        fn = api.__dict__[name]
        for p in _params(name):
            values = list(HOSTILE[_shape(p)])
            if p.default is inspect.Parameter.empty:
                values = [None] + values + ([[]] if _shape(p) in ("list", "object") else [{}])
            values += [{"a": 1}] if _shape(p) == "object" else []
            values += ["no-such-choice"] if "one of" in _contract(fn, p) else []
            for v in values:
                if not _documented(fn, p, v):
                    yield pytest.param(name, p.name, v, id=f"{name}-{p.name}-{type(v).__name__}:{str(v)[:12]}")


# -- valid arguments for every public callable, on small real data --------------------------------------------------

@pytest.fixture(scope="module")
def valid(shared_data, tmp_path_factory, fashion_run):
    tmp = tmp_path_factory.mktemp("api")
    run_dir = fashion_run("data.train_subset=200", "data.val_subset=100", "train.epochs=1", "batch.size=50")
    cfg = api.config({"data": {"name": "fashion-mnist", "train_subset": 200, "val_subset": 100},
                      "batch": {"size": 50}, "train": {"epochs": 1, "progress": "off"}, "out": str(tmp / "runs")},
                     data_root=str(shared_data))
    trainer = api.analysis_trainer(cfg)
    run = api.load_run(run_dir)
    model = api.create_model("simplenn")
    spec = tmp / "s.yaml"
    spec.write_text("question: q\nbase: {data: {name: fashion-mnist, train_subset: 100, val_subset: 50}}\n"
                    "grid: {optim.lr: [0.01, 0.02]}\n")
    x, y = run.ds.train.x[:8].float(), run.ds.train.y[:8]
    return {
        "BatchLoader": dict(split=run.ds.train, batch_size=32),
        "RunConfig": {},
        "SweepOptions": dict(spec_path=str(spec), out=str(tmp / "sweeps")),
        "Trainer": dict(cfg=cfg, write=False),
        "analysis_trainer": dict(cfg=cfg),
        "batch_range_test": dict(trainer=trainer, sizes=[8, 16], steps=1),
        "batch_sizes": {},
        "candidates": dict(k=2, low=0.01, high=0.1),
        "config": {},
        "config_from_dict": dict(data={}),
        "create_model": dict(name="simplenn"),
        "evaluate_run": dict(run=run),
        "expand": dict(spec=api.load_spec(spec)),
        "format_table": dict(s=api.summarize(model)),
        "initial_loss_check": dict(model=run.model, x=x, y=y),
        "list_datasets": {}, "list_models": {}, "load_config": {},
        "load_dataset": dict(name="fashion-mnist", root=str(shared_data), train_subset=100, val_subset=50),
        "load_run": dict(run_dir=run_dir),
        "load_spec": dict(path=spec),
        "loss_band": dict(trainer=trainer, lrs=[0.01], steps=1),
        "lr_range_test": dict(trainer=trainer, steps=2),
        "lr_sweep": dict(trainer=trainer, lrs=[0.01], epochs=1),
        "make_report": dict(inputs=[str(spec)], out=str(tmp / "r.html"), runs_out=str(tmp / "sweeps")),
        "model_info": dict(name="simplenn"),
        "new_figure": {},
        "plot_curves": dict(runs={"r": api.read_metrics(run_dir)}),
        "plot_histograms": dict(stats=api.weight_stats({"m": model.state_dict()})),
        "predictions": dict(run=run, split="val"),
        "read_metrics": dict(run_dir=run_dir), "read_summary": dict(run_dir=run_dir),
        "resume": dict(run_dir=run_dir),
        "save_figure": dict(fig=api.new_figure()[0], path=tmp / "f.png"),
        "summarize": dict(model=model),
        "sweep": dict(opts=api.SweepOptions(spec_path=str(spec), out=str(tmp / "sweeps"))),
        "train": dict(source=cfg),
        "weight_stats": dict(states={"m": model.state_dict()}),
        "write_predictions": dict(path=tmp / "p.csv", ids=["1"], labels=[0]),
    }


def test_every_public_callable_has_valid_arguments_here(valid):
    assert sorted(valid) == sorted(PUBLIC)


def test_every_argument_has_a_contract_in_its_docstring():
    """Each public function says what each argument accepts (the checks and the text are one declaration)."""
    for name in PUBLIC:
        fn = _init(api.__dict__[name])
        if not hasattr(fn, "accepts"):  # the dataclasses check in __post_init__, with their own table
            continue
        for p in _params(name):
            assert f"    {p.name}: " in fn.__doc__, (name, p.name)


MAX_GROWTH = 512 * 2**20  # bytes of peak RSS one refused call may add: the checks come before any allocation


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def refused(fn, kwargs, param):
    """Call fn(**kwargs); it must refuse with an allowed error naming `param` (quoted) in one line, without raising
    the process's peak memory. Returns the message."""
    before = _peak_rss()
    with pytest.raises(Exception) as e:
        fn(**kwargs)
    assert _peak_rss() - before < MAX_GROWTH, f"{fn.__name__}({param}=...) allocated before refusing"
    assert isinstance(e.value, ALLOWED), f"{type(e.value).__name__}: {e.value}"
    msg = str(e.value)
    assert f"'{param}'" in msg and len(msg.splitlines()) == 1, msg
    return msg


@pytest.mark.parametrize("name, param, value", list(cases()))
def test_a_wrong_argument_is_refused_by_name(valid, name, param, value, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # nothing a call might write lands in the checkout
    count_bad_input()
    kwargs = {**valid[name], param: value}
    refused(api.__dict__[name], kwargs, param)


def test_a_missing_or_unknown_argument_is_named(valid):
    for name in PUBLIC:
        fn = api.__dict__[name]
        if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
            count_bad_input()
            refused(fn, {**valid[name], "no_such_argument": 1}, "no_such_argument")
        for p in _params(name):
            if p.default is inspect.Parameter.empty:
                count_bad_input()
                refused(fn, {k: v for k, v in valid[name].items() if k != p.name}, p.name)


# -- the examples of issue #25 --------------------------------------------------------------------------------------

def test_a_run_folder_where_a_loaded_run_is_expected_is_loaded(valid, tmp_path):
    run_dir = valid["load_run"]["run_dir"]
    res = api.evaluate_run(str(run_dir), "val")
    assert res["acc"] == api.evaluate_run(valid["evaluate_run"]["run"], "val")["acc"]
    count_bad_input()
    msg = refused(api.evaluate_run, {"run": str(tmp_path / "x")}, "run")
    assert "not a run folder" in msg or "not found" in msg


def test_one_override_string_is_one_override(valid):
    cfg = api.config(valid["train"]["source"], "optim.lr=0.1")
    assert cfg.optim.lr == 0.1
    count_bad_input()
    refused(api.train, {"source": valid["train"]["source"], "overrides": "optim.lr"}, "overrides")
    count_bad_input()
    refused(api.train, {"source": valid["train"]["source"], "overrides": ["optim.lr=0.1", 3]}, "overrides")


def test_trainer_wants_a_run_config():
    count_bad_input()
    msg = refused(api.Trainer, {"cfg": {"model": {"name": "simplenn"}}}, "cfg")
    assert "api.config" in msg


def test_plot_curves_wants_at_least_one_run():
    count_bad_input(2)
    refused(api.plot_curves, {"runs": []}, "runs")
    refused(api.plot_curves, {"runs": {}}, "runs")


def test_a_model_too_big_for_memory_is_refused_before_it_is_built():
    count_bad_input()
    msg = refused(api.create_model, {"name": "simplenn", "input_size": 10**6}, "input_size")
    assert "parameters" in msg and "GiB" in msg


def test_a_summary_input_too_big_for_memory_is_refused_before_it_is_made():
    count_bad_input()
    msg = refused(api.summarize, {"model": api.create_model("simplenn"), "input_shape": (3, 2**16, 2**16),
                                  "batch_size": 2**20}, "batch_size")
    assert "GiB" in msg


def test_load_dataset_seed_and_load_run_which(valid, shared_data):
    count_bad_input(2)
    refused(api.load_dataset, {"name": "fashion-mnist", "root": str(shared_data), "seed": -1}, "seed")
    refused(api.load_run, {"run_dir": valid["load_run"]["run_dir"], "which": "worst"}, "which")


def test_a_huge_figure_is_refused_before_it_is_drawn(tmp_path):
    fig, _ = api.new_figure(figsize=(100, 100))
    count_bad_input()
    refused(api.save_figure, {"fig": fig, "path": tmp_path / "f.png", "dpi": 2000}, "dpi")
    assert not (tmp_path / "f.png").exists()


def test_write_predictions_lengths_must_agree(tmp_path):
    count_bad_input(2)
    refused(api.write_predictions, {"path": tmp_path / "p.csv", "ids": ["1", "2"], "labels": [0]}, "labels")
    refused(api.write_predictions, {"path": tmp_path / "p.csv", "ids": ["1"], "labels": [0],
                                    "probs": torch.ones(1, 2)}, "classes")


def test_valid_calls_still_work(valid):
    """The checks convert nothing a valid call passes: the same results as before."""
    assert api.candidates(**valid["candidates"]) == pytest.approx([0.01, 0.1])
    assert api.batch_sizes(8, 32) == [8, 16, 32]
    assert api.model_info("simplenn")["params"] > 0
    assert math.isclose(api.config(None, ["optim.lr=0.2"]).optim.lr, 0.2)
    assert isinstance(api.RunConfig(data={"name": "fashion-mnist"}).data, api.config().data.__class__)


def test_a_parameter_without_a_contract_is_refused_when_the_module_loads():
    """So that a parameter added later cannot go unchecked: `checked` wants a contract for every parameter."""
    from cnnlab.arguments import checked, integer

    def f(a, b=1):
        return a + b

    with pytest.raises(TypeError, match=r"no contract for \['b'\]"):
        checked(a=integer(0, 9))(f)
    assert checked(a=integer(0, 9), b=integer(0, 9))(f)(2, b=3) == 5
