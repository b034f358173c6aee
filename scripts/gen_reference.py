"""Generate the documentation site's reference pages from the code, so that no name list is written twice by hand.

    python scripts/gen_reference.py OUT_DIR     # write the pages to OUT_DIR/reference/*.md (to read them raw)

The site calls `pages()` at build time (docs/hooks.py), so the reference is never a committed copy that can drift:

- reference/config.md       every config key from the schema (`cnnlab.training.config.schema`): default, allowed
                            range or choices (registry names for the keys that name a registry entry) and meaning
- reference/cli.md          every command and sub-command from the argparse parser (`cnnlab.cli.main.build_parser`)
- reference/registries.md   every registry: models (input, parameters, options), datasets, augmentations, optimizers
                            with their update equations, schedules, losses, activations, report figures, answer kinds
                            and range-test rules
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))


# -- markdown helpers ---------------------------------------------------------------------------------------------

def cell(text: Any) -> str:
    """Text for a table cell: one line, pipes escaped, angle brackets outside `code` not read as HTML."""
    parts = " ".join(str(text).split()).split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def code(value: Any) -> str:
    s = repr(value) if isinstance(value, str) else str(value)
    return f"`{s}`" if "`" not in s else s


def table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def first_paragraph(doc: str) -> str:
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ").strip()


# -- config keys ----------------------------------------------------------------------------------------------------

def registry_choices() -> Dict[str, Any]:
    """Config keys whose value names a registry entry: the registry is the one home of the valid names."""
    from cnnlab.data import DATASETS
    from cnnlab.models import MODELS
    from cnnlab.training.losses import LOSSES
    from cnnlab.training.optim import OPTIMIZERS
    from cnnlab.training.schedules import SCHEDULES
    return {"data.name": DATASETS, "model.name": MODELS, "optim.name": OPTIMIZERS, "schedule.name": SCHEDULES,
            "train.loss": LOSSES}


def allowed(key: str, meta: Dict[str, Any]) -> str:
    """The range or choices of one key, as `validate` enforces them."""
    reg = registry_choices().get(key)
    if reg is not None:
        return ", ".join(f"`{n}`" for n in reg.names())
    if meta.get("choices"):
        return ", ".join(f"`{c}`" for c in meta["choices"])
    lo = f"> {number(meta['gt'])}" if meta.get("gt") is not None else \
        f"≥ {number(meta['min'])}" if meta.get("min") is not None else ""
    hi = f"< {number(meta['lt'])}" if meta.get("lt") is not None else \
        f"≤ {number(meta['max'])}" if meta.get("max") is not None else ""
    return cell(", ".join(p for p in (lo, hi) if p))


def type_name(tp) -> str:
    """int, float or None, list of float, dict ..."""
    import typing
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return f"{type_name(args[0])} or None"
    if origin in (list, dict):
        inner = " of " + type_name(args[0]) if origin is list and args else ""
        return origin.__name__ + inner
    return getattr(tp, "__name__", str(tp))


def config_page() -> str:
    from cnnlab.training.config import schema
    rows_by_section: Dict[str, List[List[str]]] = {}
    for key, (tp, meta, default) in schema().items():
        section = key.split(".")[0] if "." in key else "(top level)"
        rows_by_section.setdefault(section, []).append(
            [f"`{key}`", cell(type_name(tp)), code(default), allowed(key, meta), cell(meta.get("help", ""))])
    out = ["# Config keys\n",
           "Generated from the config schema (`src/cnnlab/training/config.py`) when the site is built: every key "
           "`cnnlab train` accepts as `key=value`, in a YAML file (`-c`) or in a spec's `base:`, with its default, "
           "the range or choices that are enforced, and its meaning. Precedence: defaults < YAML file < `key=value`. "
           "Every number must also be finite; bounds of a list apply to each item. `cnnlab train --help-config` "
           "prints the same list.\n"]
    for section, rows in rows_by_section.items():
        out += [f"## {section}\n", table(["key", "type", "default", "allowed", "meaning"], rows)]
    out.append("`model.options` are the chosen model's own keyword options: see [Registries](registries.md#models).\n")
    return "\n".join(out)


# -- commands -------------------------------------------------------------------------------------------------------

def commands(parser: argparse.ArgumentParser = None, prefix: str = "cnnlab") -> Iterator[Tuple[str, str, Any]]:
    """(full command, one-line help, parser) for every sub-command, depth first, in the parser's order."""
    if parser is None:
        from cnnlab.cli.main import build_parser
        parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", helps.get(name) or "", sub
                yield from commands(sub, f"{prefix} {name}")


def _argument_row(parser: argparse.ArgumentParser, action: argparse.Action) -> List[str]:
    flags = ", ".join(action.option_strings) or (action.metavar or action.dest)
    if isinstance(flags, tuple):
        flags = " ".join(flags)
    try:
        text = parser._get_formatter()._expand_help(action) if action.help else ""
    except (KeyError, TypeError, ValueError):
        text = action.help or ""
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text += " (one of: " + ", ".join(map(str, action.choices)) + ")"
    default = action.default
    shown = "" if default is None or default is False or default == argparse.SUPPRESS else code(default)
    return [f"`{cell(flags)}`", shown, cell(text)]


def cli_page() -> str:
    out = ["# Commands\n",
           "Generated from the argparse parser (`src/cnnlab/cli/main.py` and the `cli/*_cmd.py` modules) when the "
           "site is built. Every command prints the same with `--help`. A user error is one line, "
           "`cnnlab: error: ...`, and exit status 2.\n"]
    listed = list(commands())
    out.append(table(["command", "what it does"],
                     [[f"[`{c}`](#{anchor(c)})", cell(h)] for c, h, _ in listed]))
    for command, help_text, sub in listed:
        out.append(f"## {command}\n")
        if help_text:
            out.append(cell(help_text) + "\n")
        if sub.description and sub.description != help_text:
            out.append(cell(sub.description) + "\n")
        out.append("```text\n" + sub.format_usage().strip() + "\n```\n")
        rows = [_argument_row(sub, a) for a in sub._actions
                if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        if rows:
            out.append(table(["argument", "default", "meaning"], rows))
    return "\n".join(out)


def anchor(heading: str) -> str:
    """The id MkDocs (python-markdown's toc) gives a heading: lower case, punctuation dropped, spaces as dashes."""
    import re
    s = re.sub(r"[^\w\s-]", "", heading.lower()).strip()
    return re.sub(r"[-\s]+", "-", s)


# -- registries -----------------------------------------------------------------------------------------------------

def options_of(fn: Callable, skip=("entries", "num_classes", "in_channels", "input_size", "analysis_dir")) -> str:
    """A factory's keyword options with their defaults (required ones without), from its signature."""
    parts = []
    for name, p in inspect.signature(fn).parameters.items():
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = f"{p.default:.6g}" if isinstance(p.default, float) else repr(p.default)
        parts.append(f"`{name}`" if p.default is inspect.Parameter.empty else f"`{name}={default}`")
    return ", ".join(parts)


def _doc(fn: Callable) -> str:
    return first_paragraph(getattr(fn, "__doc__", "") or "")


def models_section() -> str:
    from cnnlab.models import MODELS, model_info
    rows = []
    for name in MODELS.names():
        info = model_info(name)
        shape = "×".join(map(str, info["input_shape"]))
        classes = "—" if info["num_classes"] is None else str(info["num_classes"])  # an Inception module alone
        rows.append([f"`{name}`", shape, classes, f"{info['params']:,}", cell(info["description"]),
                     cell(options_of(MODELS.get(name)))])
    return ("## Models\n\n`model.name` in a config, `create_model(name, **options)` in Python; options go in "
            "`model.options`. Parameters are counted at the defaults (`cnnlab models`, `cnnlab summary NAME`).\n\n"
            + table(["name", "input", "classes", "parameters", "description", "options (defaults)"], rows))


def optimizers_section() -> str:
    from cnnlab.training.config import schema
    from cnnlab.training.optim import OPTIMIZERS
    keys = schema()
    out = ["## Optimizers\n",
           "`optim.name`. The update of each as cnnlab runs it, per element: g is the gradient of the step's loss "
           "(plus wd·w for coupled L2), eta the lr, w the weights. Printed by `cnnlab optimizers [NAME]` from the "
           "same entry (`register_optimizer` in `src/cnnlab/training/optim.py`), with the optimizer's own defaults.\n"]
    for name in OPTIMIZERS.names():
        entry = OPTIMIZERS.get(name)
        out += [f"### {name}\n", cell(entry.title) + "\n", "```text\n" + "\n".join(entry.equations) + "\n```\n",
                table(["config key", "default", "meaning"],
                      [[f"`optim.{k}`", code(entry.defaults.get(k, keys[f'optim.{k}'][2])),
                        cell(keys[f'optim.{k}'][1]["help"])] for k in entry.keys])]
    return "\n".join(out)


def schedules_section() -> str:
    """Each schedule with the torch scheduler it builds (made on a one-parameter optimizer) and the keys it reads."""
    import torch
    from cnnlab.training.config import ScheduleConfig, schema
    from cnnlab.training.schedules import SCHEDULES
    keys = schema()
    rows = []
    for name in SCHEDULES.names():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = SCHEDULES.get(name)(opt, ScheduleConfig(name=name), 0.1, 10, 100)
        kind = type(sched).__name__ + (f" (mode={sched.mode})" if hasattr(sched, "mode") and
                                       isinstance(getattr(sched, "mode", None), str) else "")
        family = {name, "cyclical"} if type(sched).__name__ == "CyclicLR" else {name}
        used = [k for k, (_, m, _) in keys.items() if k.startswith("schedule.") and family & _applies_to(m)]
        rows.append([f"`{name}`", f"`torch.optim.lr_scheduler.{kind}`", ", ".join(f"`{k}`" for k in used)])
    return ("## Schedules\n\n`schedule.name`, stepped every iteration; `schedule.warmup` puts a linear warm-up in "
            "front of any of them. `optim.lr` is always the peak.\n\n"
            + table(["name", "built on", "keys it reads (besides optim.lr, unit, warmup)"], rows))


def _applies_to(meta: Dict[str, Any]) -> set:
    """The names a key's help says it is for: "step/multistep: ..." or "cosine: ...; cyclical: ..."."""
    import re
    names = set()
    for clause in str(meta.get("help", "")).split("; "):
        head = clause.split(":")[0]
        if ":" in clause and re.fullmatch(r"[\w/ ]+", head):
            names.update(re.split(r"[/ ]+", head))
    return names


def simple_section(title: str, intro: str, registry, describe: Callable = _doc) -> str:
    rows = [[f"`{n}`", cell(options_of(registry.get(n))), cell(describe(registry.get(n)))] for n in registry.names()]
    return f"## {title}\n\n{intro}\n\n" + table(["name", "options (defaults)", "what it does"], rows)


def registries_page() -> str:
    from cnnlab.analysis.range_tests import LR_RULES
    from cnnlab.data import DATASETS
    from cnnlab.data.augment import AUGMENTATIONS
    from cnnlab.experiments.answers import ANSWERS
    from cnnlab.experiments.figures import FIGURES
    from cnnlab.models.layers import ACTIVATIONS
    from cnnlab.training.losses import LOSSES
    parts = [
        "# Registries\n",
        "Everything chosen by name lives in a `cnnlab.registry.Registry`: a dict filled by a decorator, duplicate "
        "names rejected, and a lookup that fails with the valid names. This page is generated from the registries "
        "when the site is built; [Architecture](../architecture.md) says how to add an entry.\n",
        models_section(),
        simple_section("Datasets", "`data.name` (`cnnlab data info NAME`); see the [data guide](../guide/data.md) "
                       "for the files each reads.", DATASETS, lambda fn: _doc(fn) or fn.display_name),
        simple_section("Augmentations", "Entries of `augment.pipeline` (`{name: ..., **options}` or a bare name); "
                       "`augment.crop` / `flip` / `cutout` are shorthand for them.", AUGMENTATIONS),
        optimizers_section(),
        schedules_section(),
        simple_section("Losses", "`train.loss`; validation always reports cross-entropy.", LOSSES,
                       lambda fn: fn.__name__.strip("_").replace("_", " ")),
        simple_section("Activations", "The `activation` option of the models that take one (e.g. "
                       "`model.options.activation=swish`).", ACTIVATIONS,
                       lambda fn: fn.__name__.strip("_").replace("_", " ")),
        simple_section("Report figures", "`report.figures` in a spec: `{kind: NAME, **options}`.", FIGURES),
        simple_section("Answer kinds", "`report.answers` in a spec: `{kind: NAME, question: ..., **options}`; each "
                       "becomes a sentence computed from the runs.", ANSWERS),
        simple_section("Learning-rate range rules", "`cnnlab find-lr --rule NAME`.", LR_RULES),
    ]
    return "\n".join(parts)


def pages() -> Dict[str, str]:
    """Site path -> markdown, for every generated page."""
    return {"reference/config.md": config_page(), "reference/cli.md": cli_page(),
            "reference/registries.md": registries_page()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder to write reference/*.md into")
    args = ap.parse_args(argv)
    for path, text in pages().items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
