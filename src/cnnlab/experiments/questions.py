"""Assignment questions: one YAML file per assignment lists every question in its order and where its answer comes
from; `cnnlab answers` writes them into results/assignments/<name>/answers.json, which assignment.py renders.

The recipes (experiments/NN-*.yaml) answer the lab questions by training; the rest of an assignment is answered here,
declaratively, from what cnnlab computes or has already measured, so that each answer can be rebuilt from committed
files and says where its numbers came from:

    assignment: HW2
    title: Construct, Train, and Optimize CNN Models
    questions:
      - id: HW2 1.4                     # the course's numbering; unique, in the assignment's order
        question: L1 gives less sparsity than L2.
        claim:                          # a true/false verdict, its reason, and checks against committed runs.csv
          verdict: false
          reason: L1's constant pull drives small weights to exactly zero; L2's pull shrinks with the weight.
          checks:
            - {recipe: 05-regularization, metric: weight_sparsity, a: {variant: l1},
               b: {optim.weight_decay: 1.0e-4}, expect: higher, says: L1 leaves more weights near zero than L2}
      - id: HW2 2.1
        question: Parameters of 100 neurons fully connected to a 100x100 RGB image?
        calc: {question: fc, h: 100, w: 100, c: 3, units: 100}     # cnnlab.models.calc; its working is the evidence
        answer: "{params:,} parameters: ..."                       # filled from the calculator's numbers
      - id: HW2 Lab 2(a)
        question: Crop + flip against no augmentation?
        recipe: 02-augmentation         # copied from results/<stem>/answers.json: the answers whose label starts
                                        # with the id (or with each of `answers:`), then ':' or ' ('
      - id: HW3 2.1
        question: Summarise Fashion-MNIST.
        data: {name: fashion-mnist}     # split and class counts, as `cnnlab data info` computes them
        answer: "{total:,} images ..."
      - id: HW3 4.1
        question: Explain Cutout; show two CIFAR-10 images with it.
        text: Cutout zeroes one random square of each training image ...    # the student's own words
        examples: {dataset: cifar10, classes: [cat, ship], per_class: 1, augment: [{name: cutout, size: 16}],
                   file: fig-cutout.png}                                    # a figure drawn into the answers folder

A claim's checks compare the mean of a metric (a runs.csv column) over the runs matching selector `a` with that over
`b` (optionally per value of a column, `per`, holding for `all` or `any` of them). A check that does not hold makes
the answer *contradicted*: it says so first, with the numbers, and keeps the reasoning after it. A claim that waits
on a recipe not yet run (`measure:`) is *pending* and answered from its reason (the literature) until then; once it
has run, its 1-D landscapes are compared (`flatter:`) like any other check, its profile named first.

`build` writes OUT/answers.json atomically (schema: docs of the shared interface, one object per question with id,
question, kind, answer, evidence, figures, tables, source, code, caveat, status), and the figures beside it.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from cnnlab.data import load_dataset
from cnnlab.data.augment import build_augmentation
from cnnlab.data.paths import resolve_root
from cnnlab.data.preview import augmented_for_display, draw_grid, pick_examples, summarize as summarize_data
from cnnlab.errors import CnnlabError
from cnnlab.experiments.answers import WORDS, cap_first, show
from cnnlab.experiments.figures import key_words
from cnnlab.experiments.report import STAND_IN
from cnnlab.fileio import atomic_write_text
from cnnlab.models import calc, create_model
from cnnlab.models.calc import Working
from cnnlab.models.summary import summarize
from cnnlab.plotting import save_figure
from cnnlab.training.config import describe_keys, read_yaml
from cnnlab.training.optim import OPTIMIZERS, describe_optimizer

ASSIGNMENT_KEYS = ("assignment", "title", "questions")
SOURCES = ("claim", "calc", "data", "recipe", "text")   # exactly one per question
QUESTION_KEYS = ("id", "question", *SOURCES, "answer", "answers", "figures", "code", "caveat", "optimizers",
                 "examples", "conclusion", "settings")
CLAIM_KEYS = ("verdict", "reason", "checks", "measure")
# A recipe question's opening words in answer to its literal question (yes or no, expected or not, why), with the
# runs.csv checks that the words rest on: a check that fails turns the opening into the contradiction.
CONCLUSION_KEYS = ("text", "checks")
CHECK_KEYS = ("recipe", "metric", "a", "b", "expect", "per", "per_name", "holds", "says")
MEASURE_KEYS = ("recipe", "command", "cost", "flatter")
EXAMPLE_KEYS = ("dataset", "classes", "per_class", "augment", "file", "seed")
# The kind written into answers.json: the source key, except that a dataset summary is a computation like `calc`.
KIND = {"claim": "claim", "calc": "calc", "data": "calc", "recipe": "recipe", "text": "text"}
MAX_QUESTIONS = 500


@dataclass
class Question:
    id: str
    question: str
    source: str                      # one of SOURCES
    spec: Dict[str, Any]             # the question's whole mapping from the file

    @property
    def kind(self) -> str:
        return KIND[self.source]


@dataclass
class Assignment:
    name: str
    title: str
    path: Path
    questions: List[Question] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------
# Loading: every mistake is one line naming the file, the question and the key


def _fail(path: Path, where: str, problem: str) -> CnnlabError:
    return CnnlabError(f"assignment file {str(path)!r}: {where}{problem}")


def _keys(data: Any, allowed: Sequence[str], path: Path, where: str) -> dict:
    if not isinstance(data, dict):
        raise _fail(path, where, f"must be a mapping, got {type(data).__name__}")
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise _fail(path, where, f"unknown key {unknown[0]!r}; known keys: {', '.join(allowed)}")
    return data


def _short(value: Any) -> str:
    """A value as an error message shows it: its repr, cut to one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any, path: Path, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"must be non-empty text, got {_short(value)}")
    return value.strip()


def _component(value: Any, path: Path, where: str) -> str:
    """A recipe stem names a folder under results/: no path separators, not dots alone."""
    text = _text(value, path, where)
    if "/" in text or "\\" in text or set(text) == {"."}:
        raise _fail(path, where, f"must be a recipe's stem such as 05-regularization, got {text!r}")
    return text


def _str_list(value: Any, path: Path, where: str) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, where, f"must be a list of text, got {_short(value)}")
    return value


def load_assignment(path) -> Assignment:
    """Read and check an assignment file: known keys only, every question with an id, a question and exactly one
    source; ids unique. What each source computes is checked when it is built."""
    path = Path(path)
    data = _keys(read_yaml(path, "assignment file"), ASSIGNMENT_KEYS, path, "")
    name = _text(data.get("assignment"), path, "assignment ")
    title = _text(data.get("title"), path, "title ")
    items = data.get("questions")
    if not isinstance(items, list) or not items:
        raise _fail(path, "", "needs 'questions:', a non-empty list of questions")
    if len(items) > MAX_QUESTIONS:
        raise _fail(path, "", f"has {len(items)} questions; at most {MAX_QUESTIONS}")
    out = Assignment(name, title, path)
    seen = set()
    for i, item in enumerate(items, 1):
        where = f"question {i} "
        q = _keys(item, QUESTION_KEYS, path, where)
        qid = _text(q.get("id"), path, where + "id ")
        where = f"question {qid!r} "
        if qid in seen:
            raise _fail(path, where, "appears twice; ids must be unique")
        seen.add(qid)
        sources = [s for s in SOURCES if s in q]
        if len(sources) != 1:
            raise _fail(path, where, f"needs exactly one of {', '.join(SOURCES)}; it has "
                                     f"{', '.join(sources) or 'none'}")
        for key in ("figures", "code", "answers"):
            if key in q:
                _str_list(q[key], path, where + f"{key} ")
        for fig in q.get("figures", []):
            if fig.startswith("/") or ".." in fig.split("/"):
                raise _fail(path, where, f"figure {fig!r} must be a path inside the results folder, e.g. "
                                         "05-regularization/report_files/fig03.png")
        if "caveat" in q:
            _text(q["caveat"], path, where + "caveat ")
        _check_source(sources[0], q, path, where)
        out.questions.append(Question(qid, _text(q.get("question"), path, where + "question "), sources[0], q))
    return out


def _check_source(source: str, q: dict, path: Path, where: str) -> None:
    """The shape of each source, before anything is computed."""
    value = q[source]
    if source == "recipe":
        _component(value, path, where + "recipe ")
    elif source == "text":
        _text(value, path, where + "text ")
    elif source in ("calc", "data"):
        if not isinstance(value, dict):
            raise _fail(path, where, f"{source} must be a mapping of arguments, got {type(value).__name__}")
        key = "question" if source == "calc" else "name"
        if value.get(key) is None:
            raise _fail(path, where, f"{source} needs '{key}:'" + (f" (one of {', '.join(CALCS)})"
                                                                   if source == "calc" else ""))
        if source == "calc" and value["question"] not in CALCS:
            raise _fail(path, where, f"calc question {value['question']!r} is not known; known: {', '.join(CALCS)}")
        _text(q.get("answer"), path, where + "answer (a template filled from the computed numbers) ")
    elif source == "claim":
        _check_claim(value, path, where)
    if "conclusion" in q:
        _check_conclusion(q["conclusion"], source, path, where)
    if "settings" in q:
        if source != "recipe":
            raise _fail(path, where, "settings is for recipe questions: the runs.csv columns to show as a table")
        _str_list(q["settings"], path, where + "settings ")
    if "optimizers" in q:
        _str_list(q["optimizers"], path, where + "optimizers ")
    if "examples" in q:
        _check_examples(q["examples"], path, where)


def _check_claim(value, path: Path, where: str) -> None:
    """A claim: its verdict and reason, its checks against committed runs.csv files, the recipe that would measure
    it."""
    c = _keys(value, CLAIM_KEYS, path, where + "claim ")
    if not isinstance(c.get("verdict"), bool):
        raise _fail(path, where, f"claim verdict must be true or false, got {_short(c.get('verdict'))}")
    _text(c.get("reason"), path, where + "claim reason ")
    checks = c.get("checks", [])
    if not isinstance(checks, list) or (not checks and "measure" not in c):
        raise _fail(path, where, "claim needs 'checks:' (a list) or 'measure:' (the recipe that would measure "
                                 "it)")
    for j, check in enumerate(checks, 1):
        _check_claim_check(check, path, where + f"check {j} ")
    if "measure" in c:
        m = _keys(c["measure"], MEASURE_KEYS, path, where + "claim measure ")
        for k in ("recipe", "command", "cost"):
            _text(m.get(k), path, where + f"claim measure {k} ")
        _component(m["recipe"], path, where + "claim measure recipe ")
        if "flatter" in m:
            f = _keys(m["flatter"], ("a", "b", "says"), path, where + "claim measure flatter ")
            for k in ("a", "b", "says"):
                _text(f.get(k), path, where + f"claim measure flatter {k} ")


def _check_claim_check(check, path: Path, w: str) -> None:
    """One check of a claim: two groups of runs (a, b) of a recipe and which way a's mean should lie from b's."""
    _keys(check, CHECK_KEYS, path, w)
    for k in ("recipe", "metric", "says"):
        _text(check.get(k), path, w + f"{k} ")
    _component(check["recipe"], path, w + "recipe ")
    for k in ("per", "per_name"):
        if k in check:
            _text(check[k], path, w + f"{k} ")
    if not isinstance(check.get("a"), dict) or not check["a"]:
        raise _fail(path, w, "'a' must be a non-empty mapping of runs.csv columns to values")
    b = check.get("b")
    # b: other runs, or a fixed value of the metric (a target the runs should, or should not, reach)
    if not (isinstance(b, dict) and b) and (isinstance(b, bool) or not isinstance(b, (int, float))):
        raise _fail(path, w, "'b' must be a non-empty mapping of runs.csv columns to values, or a number (a "
                             "value of the metric to compare a's mean with)")
    if check.get("expect") not in ("higher", "lower"):
        raise _fail(path, w, f"expect must be higher or lower (a's mean against b's), got "
                             f"{_short(check.get('expect'))}")
    if check.get("holds", "all") not in ("all", "any"):
        raise _fail(path, w, f"holds must be all or any, got {_short(check.get('holds'))}")


def _check_examples(value, path: Path, where: str) -> None:
    """The example images a question shows: the dataset, the .png name, the classes, per_class and seed."""
    e = _keys(value, EXAMPLE_KEYS, path, where + "examples ")
    _text(e.get("dataset"), path, where + "examples dataset ")
    name = _text(e.get("file"), path, where + "examples file ")
    if "/" in name or "\\" in name or not name.endswith(".png"):
        raise _fail(path, where, f"examples file must be a .png name in the answers folder, got {name!r}")
    per_class = e.get("per_class", 1)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or not 1 <= per_class <= 16:
        raise _fail(path, where, f"examples per_class must be a whole number from 1 to 16, got "
                                 f"{_short(per_class)}")
    if "classes" in e:
        _str_list(e["classes"], path, where + "examples classes ")
    if isinstance(e.get("seed", 0), bool) or not isinstance(e.get("seed", 0), int):
        raise _fail(path, where, f"examples seed must be a whole number, got {_short(e.get('seed'))}")


def _check_conclusion(value, source: str, path: Path, where: str) -> None:
    """A recipe question's conclusion: its words, and the runs.csv checks they rest on (as a claim's)."""
    if source != "recipe":
        raise _fail(path, where, "conclusion is for recipe questions (a claim says its verdict and reason)")
    c = _keys(value, CONCLUSION_KEYS, path, where + "conclusion ")
    _text(c.get("text"), path, where + "conclusion text ")
    if not isinstance(c.get("checks", []), list):
        raise _fail(path, where, "conclusion checks must be a list of runs.csv checks")
    for j, check in enumerate(c.get("checks", []), 1):
        _check_claim_check(check, path, where + f"conclusion check {j} ")


# ----------------------------------------------------------------------------------------------------------------
# Sources


@dataclass
class Context:
    """Where a build reads from: the results folder (results/<stem>/answers.json, runs.csv), the repository root
    (the recipes' specs) and the data root (datasets for data summaries and example figures)."""
    results: Path
    out: Path
    data_root: Optional[str] = None
    source: str = ""                 # the assignment file, the source of answers written in it (text)
    download: bool = False           # fetch a missing dataset (official files, checksummed)

    @property
    def root(self) -> Path:
        return self.results.parent

    def rel(self, results_path: str) -> str:
        """A path under results/ as the answers folder reaches it (the documents link from there)."""
        return Path(os.path.relpath(self.results / results_path, self.out)).as_posix()


def model_check(name: str) -> Any:
    """The Step-0 sanity check of a registered model as a `Working`: the output shape of a dummy batch of its input
    size and the parameters of every conv/FC layer (what `cnnlab summary NAME` prints)."""
    model = create_model(name).eval()
    shape = tuple(model.input_shape)
    with torch.no_grad():
        out = model(torch.zeros(2, *shape))
    s = summarize(model)
    work = Working(f"{name}: a dummy batch of 2 images {shape[1]}x{shape[2]}x{shape[0]} through the model")
    work.add(f"output shape: {tuple(out.shape)} (batch x classes)")
    for r in s.rows:
        if r.params:
            work.add(f"{r.name:24s} {r.type:10s} output {'x'.join(map(str, r.output_shape[1:])):>10s}  "
                     f"params {r.weights:,} + {r.biases:,} = {r.params:,}")
    work.add(f"total parameters: {s.totals.params:,}")
    work.answer = dict(output=tuple(out.shape), classes=out.shape[1], params=s.totals.params)
    return work


# Each calc question: the function that works it (in cnnlab.models.calc, or model_check here) and the `cnnlab`
# command that prints the same working.
CALCS = {"model": ("model_check", "summary"), "conv": ("conv", "calc conv"), "fc": ("fc", "calc fc"),
         "rf": ("receptive_field", "calc rf"), "rf_model": ("receptive_field_of", "calc rf --model"),
         "separable": ("separable", "calc separable"), "separable_net": ("separable_network", "calc separable-net"),
         "inception": ("inception", "calc inception"), "vgg19": ("vgg19_table", "calc vgg19"),
         "alexnet": ("alexnet_params", "calc alexnet")}


def calc_function(name: str) -> Callable:
    function = CALCS[name][0]
    return model_check if function == "model_check" else getattr(calc, function)


def _calc_command(cmd: str, args: Dict[str, Any]) -> str:
    """The `cnnlab calc` line that prints the same working."""
    args = dict(args)
    parts = ["cnnlab", cmd]
    if "name" in args:
        parts.append(str(args.pop("name")))
    if {"h", "w", "c"} <= set(args):
        parts.append(f"--input {args.pop('h')}x{args.pop('w')}x{args.pop('c')}")
    parts += [f"--{k.replace('_', '-')} {v}" for k, v in args.items()]
    return " ".join(parts)


def _fill(template: str, values: Dict[str, Any], what: str) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise CnnlabError(f"{what}: the answer template cannot be filled ({type(e).__name__}: {e}); its fields "
                          f"are {', '.join(sorted(values))}") from None


def build_calc(q: Question, ctx: Context) -> Dict[str, Any]:
    args = dict(q.spec["calc"])
    name = args.pop("question")
    cmd = CALCS[name][1]
    try:
        work = calc_function(name)(**args)
    except (TypeError, ValueError) as e:
        raise CnnlabError(f"question {q.id!r}: calc {name} does not take these arguments ({e})") from None
    out = _entry(q, answer=_fill(q.spec["answer"], work.answer, f"question {q.id!r}"),
                 evidence=[work.title, *work.steps], source=_calc_command(cmd, args))
    if name == "vgg19":
        rows = [["INPUT", "224x224x3", f"{3 * 224 * 224:,}", "0"]]
        rows += [[label, shape, f"{a:,}", f"{w:,}"] for label, shape, a, w in work.answer["weight_rows"]]
        rows.append(["TOTAL", "", f"{work.answer['activations']:,}", f"{work.answer['weights']:,}"])
        out["tables"] = [{"columns": ["layer", "output (HxWxC)", "activations (memory)",
                                      "weights, no biases (compute)"], "rows": rows}]
    return out


def build_data(q: Question, ctx: Context) -> Dict[str, Any]:
    args = dict(q.spec["data"])
    try:
        ds = load_dataset(args.pop("name"), root=ctx.data_root, download=ctx.download, **args)
    except (TypeError, ValueError) as e:
        raise CnnlabError(f"question {q.id!r}: data takes name, val_size, seed ({e})") from None
    summary = summarize_data(ds)
    splits = [s for s in summary if summary[s]["per_class"] is not None]
    values = {"name": ds.name, "classes": ds.num_classes, "class_names": ", ".join(ds.classes),
              "total": sum(summary[s]["images"] for s in splits), "shape": "x".join(map(str, ds.shape)),
              "mean": ", ".join(f"{m:.4f}" for m in ds.mean), "std": ", ".join(f"{s:.4f}" for s in ds.std)}
    values.update({s: summary[s]["images"] for s in summary})
    for s in splits:
        counts = list(summary[s]["per_class"].values())
        values.update({s: summary[s]["images"], f"{s}_per_class_min": min(counts), f"{s}_per_class_max": max(counts)})
    per_class_total = [sum(summary[s]["per_class"][c] for s in splits) for c in ds.classes]
    values.update(per_class_min=min(per_class_total), per_class_max=max(per_class_total))
    # the source without the machine's data root, so that the answer rebuilds the same wherever the data lives
    root = resolve_root(ctx.data_root)[0]
    where = str(ds.source)
    for spelling in {str(root), str(root.resolve()), str(ctx.data_root or "").rstrip("/")} - {""}:
        where = where.replace(spelling, "<data root>")
    evidence = [f"dataset {ds.name}: {ds.num_classes} classes, images {values['shape']} (C x H x W), uint8; "
                f"source: {where}"]
    for s in summary:
        evidence.append(f"{s}: {summary[s]['images']:,} images" + (
            "; per class " + ", ".join(f"{k} {v:,}" for k, v in summary[s]["per_class"].items())
            if summary[s]["per_class"] is not None else " (unlabelled)"))
    rows = [[c, *(f"{summary[s]['per_class'][c]:,}" for s in splits), f"{t:,}"]
            for c, t in zip(ds.classes, per_class_total)]
    table = {"columns": ["class", *splits, "total"], "rows": rows}
    return _entry(q, answer=_fill(q.spec["answer"], values, f"question {q.id!r}"), evidence=evidence,
                  tables=[table], source=f"cnnlab data info {ds.name}")



def _recipe_blocks(ctx: Context, stem: str) -> Optional[list]:
    path = ctx.results / stem / "answers.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CnnlabError(f"cannot read {str(path)!r} ({e}); rebuild it with `cnnlab report`") from None
    return data if isinstance(data, list) else [data]


def _label_matches(label: str, prefix: str) -> bool:
    """'HW2 Lab 2(b)ii: BN ...' matches 'HW2 Lab 2(b)ii', not 'HW2 Lab 2(b)i'."""
    return label == prefix or (label.startswith(prefix) and label[len(prefix):].startswith((":", " (")))


def _stands_in(ctx: Context, block: dict) -> str:
    """What the profile that ran cannot show of the course's answer (the spec's profiles.<name>.stands_in)."""
    m = re.search(r"\((\w+) profile\)", str(block.get("source", "")))
    spec = ctx.root / str(block.get("spec", ""))
    if not m or not block.get("spec") or not spec.is_file():
        return ""
    profile = ((read_yaml(spec, "recipe spec") or {}).get("profiles") or {}).get(m.group(1)) or {}
    return " ".join(str(profile.get("stands_in") or "").split())


def build_recipe(q: Question, ctx: Context) -> Dict[str, Any]:
    stem = q.spec["recipe"]
    prefixes = q.spec.get("answers") or [q.id]
    blocks = _recipe_blocks(ctx, stem)
    if blocks is None:
        return _entry(q, answer=f"Not yet measured: recipe {stem} has no committed results (results/{stem}/"
                                f"answers.json).", source=stem, status="pending")
    found = [(b, a) for p in prefixes for b in blocks for a in b.get("answers", [])
             if _label_matches(str(a.get("question", "")), p)]
    if not found:
        labels = [a.get("question") for b in blocks for a in b.get("answers", [])]
        raise CnnlabError(f"question {q.id!r}: results/{stem}/answers.json has no answer labelled "
                          f"{' or '.join(map(repr, prefixes))}; its labels: {'; '.join(map(str, labels))}")
    block = found[0][0]
    # the stand-in's opening words once per answer, not once per recipe sentence joined into it
    texts = [a["text"] for _, a in found]
    answer = " ".join([texts[0]] + [cap_first(t.removeprefix(STAND_IN + ": ")) for t in texts[1:]])
    evidence = [f"{block.get('source', stem)}: {block.get('ran', '')}".rstrip(": ")]
    evidence += [f"from results/{stem}/answers.json: " + "; ".join(str(a["question"]) for _, a in found)]
    if "conclusion" in q.spec:  # the checks of the opening words, after where the numbers come from
        answer, lines = _concluded(q, ctx, answer)
        evidence += lines
    tables = [_settings_table(q, ctx, stem)] if "settings" in q.spec else []
    caveat = " ".join(filter(None, [q.spec.get("caveat"), _stands_in(ctx, block)]))
    if caveat:
        caveat = f"Stand-in budget ({block.get('ran', '').removeprefix('ran: ')}): {caveat.rstrip('.')}."
    out = _entry(q, answer=answer, evidence=evidence, source=stem, caveat=caveat)
    if tables:
        out["tables"] = tables
    return out


def _settings_table(q: Question, ctx: Context, stem: str) -> Dict[str, Any]:
    """The settings the recipe's runs used (its runs.csv columns the question names), one row per distinct setting:
    what an answer's numbers were measured at, beside the defaults a text answer may list."""
    rows = _runs(ctx, stem) or []
    cols = q.spec["settings"]
    _need_columns(rows, cols, f"question {q.id!r}: results/{stem}")
    seen = list(dict.fromkeys(tuple(r.get(c, "") for c in cols) for r in rows))
    return {"columns": [key_words(c) for c in cols], "rows": [list(t) for t in seen],
            "caption": f"The settings its runs used (recipe {stem})"}


def _concluded(q: Question, ctx: Context, answer: str) -> Tuple[str, List[str]]:
    """The recipe's answer opened with the question's conclusion in plain words (after a stand-in's opening words,
    which come first), or with the contradiction where a check of it fails on the committed runs."""
    conclusion = q.spec["conclusion"]
    results = [run_check(c, ctx, f"question {q.id!r}") for c in conclusion.get("checks", [])]
    failed = [r for r in results if r.holds is False]
    text = " ".join(conclusion["text"].split())
    if failed:
        text = ("Our runs contradict the conclusion we expected (" + text.rstrip(".") + "): "
                + "; ".join(f"we expected that {r.says}, and it did not hold" for r in failed) + ".")
    head = STAND_IN + ": "
    opening = head if answer.startswith(head) else ""
    return opening + text + " " + cap_first(answer.removeprefix(opening)), [r.line for r in results]


def build_text(q: Question, ctx: Context) -> Dict[str, Any]:
    out = _entry(q, answer=" ".join(q.spec["text"].split()), source=ctx.source)
    if "optimizers" in q.spec:
        evidence, rows = optimizer_table(q.spec["optimizers"])
        out.update(evidence=evidence, source="cnnlab optimizers " + " ".join(q.spec["optimizers"]),
                   tables=[{"columns": ["optimizer", "update (per element)", "hyperparameters (config key = "
                                                                              "default)"], "rows": rows}])
    return out


def optimizer_table(names: Sequence[str]) -> Tuple[List[str], List[List[str]]]:
    """The update equations and hyperparameters of `names` from their optimizer entries (training.optim, their one
    home), as `cnnlab optimizers` prints them, and as table rows."""
    defaults = {key: (default, meaning) for key, default, meaning in describe_keys()}
    evidence = ["g: gradient of the step's loss (+ weight_decay*w for coupled L2), eta: the lr at this step, "
                "w: weights; every operation is per element."]
    rows = []
    for name in names:
        if name not in OPTIMIZERS:
            raise CnnlabError(f"optimizer {name!r} has no update equations; known: {', '.join(OPTIMIZERS.names())}")
        evidence += describe_optimizer(name, defaults)
        entry = OPTIMIZERS.get(name)
        rows.append([f"{name}: {entry.title}", "; ".join(" ".join(l.split()) for l in entry.equations),
                     ", ".join(f"{k} = {entry.defaults.get(k, defaults[f'optim.{k}'][0])!r}" for k in entry.keys)])
    return evidence, rows


# -- claims ----------------------------------------------------------------------------------------------------------


def _runs(ctx: Context, stem: str) -> Optional[List[Dict[str, str]]]:
    path = ctx.results / stem / "runs.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if r.get("status", "finished") == "finished"]


def _same(cell: Optional[str], want: Any) -> bool:
    if cell is None:
        return False
    try:
        return math.isclose(float(cell), float(want), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(cell) == str(want)


def _need_columns(rows: List[Dict[str, str]], keys, where: str) -> None:
    for key in keys:
        if rows and key not in rows[0]:
            raise CnnlabError(f"{where}: runs.csv has no column {key!r}; its columns: {', '.join(rows[0])}")


def _select(rows: List[Dict[str, str]], sel: Dict[str, Any], metric: str, where: str) -> List[float]:
    _need_columns(rows, (*sel, metric), where)
    return [float(r[metric]) for r in rows if all(_same(r.get(k), v) for k, v in sel.items()) and r[metric] != ""]


def _selector(sel: Any, metric: str = "") -> str:
    if not isinstance(sel, dict):  # a fixed value of the metric
        return f"the value {_show(metric, float(sel))}" if metric else f"the value {sel}"
    return ", ".join(f"{k}={v}" for k, v in sel.items())


def _show(metric: str, v: float) -> str:
    return show({"wall_s": "wall_time"}.get(metric, metric), v)


def _words(metric: str) -> str:
    return WORDS.get({"wall_s": "wall_time"}.get(metric, metric), metric)


@dataclass
class CheckResult:
    holds: Optional[bool]     # None: the recipe has not run
    says: str
    line: str                 # the numbers compared, with where they come from
    ran: str = ""
    caveat: str = ""
    short: str = ""           # the numbers in a few words, for the answer itself


def _check_pairs(rows: List[dict], check: Dict[str, Any], where: str) -> List[tuple]:
    """(value of `per` or None, a's mean, b's mean, a's count, b's count, as expected) for each value of the check's
    `per` column (one tuple without `per`) where both a and b have finished runs."""
    metric, expect = check["metric"], check["expect"]
    a, b, per = check["a"], check["b"], check.get("per")
    keys = sorted({r.get(per, "") for r in rows}) if per else [None]
    pairs = []
    for value in keys:
        extra = {per: value} if per else {}
        va = _select(rows, {**a, **extra}, metric, where)
        vb = [float(b)] if not isinstance(b, dict) else _select(rows, {**b, **extra}, metric, where)
        if va and vb:
            ma, mb = statistics.fmean(va), statistics.fmean(vb)
            pairs.append((value, ma, mb, len(va), len(vb), ma > mb if expect == "higher" else ma < mb))
    if not pairs:
        raise CnnlabError(f"{where}: no finished runs match a ({_selector(a)}) and b ({_selector(b, metric)}); fix "
                          "the selectors to name runs.csv values")
    return pairs


def run_check(check: Dict[str, Any], ctx: Context, where: str) -> CheckResult:
    stem, metric, expect = check["recipe"], check["metric"], check["expect"]
    rows = _runs(ctx, stem)
    if rows is None:
        return CheckResult(None, check["says"], f"{stem}: no committed runs.csv yet")
    a, b, per = check["a"], check["b"], check.get("per")
    pairs = _check_pairs(rows, check, f"{where} check on {stem}")
    ok = [p[-1] for p in pairs]
    holds = any(ok) if check.get("holds", "all") == "any" else all(ok)
    shown = "; ".join(f"{'' if v is None else f'{v}: '}{_show(metric, ma)} (n={na}) against {_show(metric, mb)} "
                      f"(n={nb}), {'higher' if ma > mb else 'lower' if ma < mb else 'equal'}"
                      for v, ma, mb, na, nb, _ in pairs)
    verdict = "holds" if holds else "does not hold"
    if per:
        expected = f"expected {expect} for {check.get('holds', 'all')}: {sum(ok)} of {len(ok)} ({verdict})"
    else:
        expected = f"expected {expect}: {verdict}"
    line = (f"results/{stem}/runs.csv, {_words(metric)}, {_selector(a)} against {_selector(b, metric)}"
            f"{f' per {per}' if per else ''}: {shown}; {expected}.")
    block = (_recipe_blocks(ctx, stem) or [{}])[0]
    ran = str(block.get("ran", "")).removeprefix("ran: ")
    stands_in = _stands_in(ctx, block)
    caveat = f"Stand-in budget in {stem} ({ran}): {stands_in.rstrip('.')}." if stands_in else ""
    if per:
        short = f"{sum(ok)} of {len(ok)} {check.get('per_name') or per + ' values'}"
    else:
        short = f"{_show(metric, pairs[0][1])} against {_show(metric, pairs[0][2])}"
    says = f"{check['says']} (recipe {stem}: {short})"
    return CheckResult(holds, says, line, f"{stem}: {ran}" if ran else "", caveat, short)


# The result line of `cnnlab landscape` (1-D) as a recipe's analysis answer repeats it.
_LANDSCAPE = re.compile(r"Analysis (\S+): \S+: loss at the trained weights ([-\d.]+), "
                        r"at the ends ([-\d.]+) / ([-\d.]+)")


def landscape_rises(blocks: list) -> Dict[str, float]:
    """step -> how far the loss rises from the trained weights to the ends of its 1-D landscape (the mean of the two
    ends minus the centre): a flatter, wider basin rises less."""
    out = {}
    for block in blocks:
        for a in block.get("answers", []):
            for m in _LANDSCAPE.finditer(str(a.get("text", ""))):
                centre, left, right = (float(v) for v in m.groups()[1:])
                out[m.group(1)] = (left + right) / 2 - centre
    return out


def measure_check(measure: Dict[str, Any], blocks: list, ctx: Context) -> Optional[CheckResult]:
    """The claim's measuring recipe, once it has run: its `flatter: {a: step, b: step, says}` compared (a's landscape
    should rise less than b's), with the profile it ran in as the caveat. None when it names no comparison or its
    results hold neither landscape."""
    flatter = measure.get("flatter")
    rises = landscape_rises(blocks)
    if not flatter or flatter["a"] not in rises or flatter["b"] not in rises:
        return None
    stem, block = measure["recipe"], blocks[0]
    ra, rb = rises[flatter["a"]], rises[flatter["b"]]
    holds = ra < rb
    line = (f"results/{stem}/answers.json, loss rise from the trained weights to the ends of a filter-normalised "
            f"direction (mean of the two ends minus the centre): {flatter['a']} {ra:.4g} against {flatter['b']} "
            f"{rb:.4g}; expected lower: {'holds' if holds else 'does not hold'}.")
    ran = str(block.get("ran", "")).removeprefix("ran: ")
    profile = re.search(r"\((\w+) profile\)", str(block.get("source", "")))
    stands_in = _stands_in(ctx, block)
    if profile and profile.group(1) == "quick":
        caveat = f"Smoke test ({stem}, quick profile: {ran}): not a result."
    else:
        caveat = f"Stand-in budget in {stem} ({ran}): {stands_in.rstrip('.')}." if stands_in else ""
    says = f"{flatter['says']} (recipe {stem}: {ra:.4g} against {rb:.4g})"
    return CheckResult(holds, says, line, f"{stem}: {ran}" if ran else "", caveat, f"{ra:.4g} against {rb:.4g}")


def build_claim(q: Question, ctx: Context) -> Dict[str, Any]:
    claim = q.spec["claim"]
    verdict = "True" if claim["verdict"] else "False"
    reason = " ".join(claim["reason"].split())
    results = [run_check(c, ctx, f"question {q.id!r}") for c in claim.get("checks", [])]
    evidence, caveats, status = [r.line for r in results], [], "answered"
    measure = claim.get("measure")
    if measure:
        blocks = _recipe_blocks(ctx, measure["recipe"])
        if blocks is None:
            status = "pending"
            caveats.append(f"Answered from the literature: recipe {measure['recipe']}, which measures it, has not "
                           f"run yet ({measure['command']}; {measure['cost']}).")
        else:
            result = measure_check(measure, blocks, ctx)
            if result is not None:
                results.append(result)
                evidence.append(result.line)
            evidence += [f"{b.get('source')}: {a.get('question')}: {a.get('text')}" for b in blocks
                         for a in b.get("answers", [])]
    measured = [r for r in results if r.holds is not None]
    failed = [r for r in measured if not r.holds]
    caveats[:0] = sorted({r.caveat for r in measured if r.caveat})  # a smoke test or stand-in says so first
    if failed:
        status = "contradicted"
        answer = (f"{verdict} by the reasoning, but our measurement contradicts part of its evidence: "
                  + "; ".join(f"we expected that {r.says}, and it did not hold" for r in failed)
                  + f". The reasoning: {reason}")
    else:
        answer = f"{verdict}: {reason}"
        if measured:
            answer += " Measured: " + "; ".join(r.says for r in measured) + "."
    ran = sorted({r.ran for r in measured if r.ran})
    if ran:
        evidence.append("Runs compared: " + "; ".join(ran) + ".")
    caveats.append(q.spec.get("caveat", ""))
    sources = sorted({c["recipe"] for c in claim.get("checks", [])} | ({measure["recipe"]} if measure else set()))
    return _entry(q, answer=answer, evidence=evidence, source=", ".join(sources),
                  caveat=" ".join(c for c in caveats if c), status=status)


BUILDERS = {"calc": build_calc, "data": build_data, "recipe": build_recipe, "text": build_text, "claim": build_claim}


# ----------------------------------------------------------------------------------------------------------------
# Figures and the whole file


def _entry(q: Question, answer: str, evidence: Optional[List[str]] = None, source: str = "",
           tables: Optional[list] = None, caveat: str = "", status: str = "answered") -> Dict[str, Any]:
    return {"id": q.id, "question": q.question, "kind": q.kind, "answer": answer, "evidence": evidence or [],
            "figures": [], "tables": tables or [], "source": source, "code": list(q.spec.get("code", [])),
            "caveat": caveat or q.spec.get("caveat", ""), "status": status}


def figure_caption(results: Path, fig: str) -> str:
    """A recipe figure's caption as its report gives it (the image's alt text in results/<stem>/report.md), with the
    recipe named; the path alone where the report does not show it."""
    stem, _, rest = fig.partition("/")
    report = results / stem / "report.md"
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    m = re.search(r"!\[([^\]]*)\]\(" + re.escape(rest) + r"\)", text)
    if not m:
        return f"{fig} (recipe {stem})"
    return f"{html.unescape(m.group(1).replace(chr(92), ''))} (recipe {stem})"


def draw_examples(spec: Dict[str, Any], ctx: Context):
    """(figure, caption): the first training images of the named classes, a grid of `per_class` per class, or, with
    `augment`, each image beside its augmented version (Cutout holes show as the mean colour)."""
    ds = load_dataset(spec["dataset"], root=ctx.data_root, download=ctx.download)
    names = spec.get("classes") or list(ds.classes)
    unknown = [c for c in names if c not in ds.classes]
    if unknown:
        raise CnnlabError(f"examples: {unknown[0]!r} is not a class of {ds.name}; classes: {', '.join(ds.classes)}")
    classes = [ds.classes.index(c) for c in names]
    per_class = int(spec.get("per_class", 1))
    index = pick_examples(ds.train, classes, per_class).reshape(-1)
    x = ds.train.x[index]
    labels = [ds.classes[int(k)] for k in ds.train.y[index]]
    if not spec.get("augment"):
        grid = x.reshape(len(classes), per_class, *x.shape[1:])
        title = f"{ds.name}: training images, {per_class} per class"
        return draw_grid(grid, [ds.classes[k] for k in classes], title), (
            f"The first {per_class} {ds.name} training images of each of {', '.join(names)} (cnnlab data info)")
    pipeline = build_augmentation(spec["augment"])
    aug = augmented_for_display(x, pipeline, ds.mean, ds.std, int(spec.get("seed", 0)))
    grid = torch.stack([x.float() / 255, aug], dim=1)
    title = f"{ds.name}: original (left), after {pipeline.describe()} (right)"
    return draw_grid(grid, labels, title, ax_size=1.4), (
        f"{len(labels)} {ds.name} training images ({', '.join(labels)}), original on the left and after "
        f"{pipeline.describe()} on the right (seed {int(spec.get('seed', 0))})")


def build(path, out, results: str = "results", data_root: Optional[str] = None,
          download: bool = False) -> Dict[str, Any]:
    """Every answer of the assignment file at `path`, figures saved into `out`, OUT/answers.json written atomically.
    Returns the document written."""
    assignment = load_assignment(path)
    ctx = Context(Path(results), Path(out), data_root, Path(path).as_posix(), download)
    if not ctx.results.is_dir():
        raise CnnlabError(f"results folder {str(ctx.results)!r} not found; run from the repository root or give "
                          "--results")
    entries = []
    for q in assignment.questions:
        entry = BUILDERS[q.source](q, ctx)
        for fig in q.spec.get("figures", []):
            if not (ctx.results / fig).is_file():
                raise CnnlabError(f"question {q.id!r}: figure {fig!r} not found under {str(ctx.results)!r}")
            entry["figures"].append({"path": ctx.rel(fig), "caption": figure_caption(ctx.results, fig)})
        if "examples" in q.spec:
            name = q.spec["examples"]["file"]
            figure, caption = draw_examples(q.spec["examples"], ctx)
            save_figure(figure, ctx.out / name)
            entry["figures"].append({"path": name, "caption": caption})
        entries.append(entry)
    doc = {"assignment": assignment.name, "title": assignment.title, "source": Path(path).as_posix(),
           "questions": entries}
    atomic_write_text(ctx.out / "answers.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return doc
