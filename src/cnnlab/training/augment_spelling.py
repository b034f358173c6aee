"""The run config's augmentation is one ordered list of registry specs, `augment.pipeline`; this module keeps the
older spelling working both ways.

Reading: the classic keys (`augment.crop: 4`, `augment.flip: 0.5`, `augment.cutout: 16` with `crop_mode` and
`cutout_count`, and `augment.extra: [...]`) are shorthand that edits the pipeline, so every recipe, sweep axis,
saved `config.yaml` and checkpoint written before the list existed still reads, and a sweep can still vary
`augment.cutout` over a pipeline given as a list. A main key of 0 removes its augmentation, another value sets the
option on the pipeline's entry of that name or adds one in the classic order (crop, flip, cutout, ahead of the rest);
`crop_mode` and `cutout_count` set their option where the entry exists; `extra` entries are appended.

Writing: `view()` shows a pipeline in the classic keys whenever they can express it (at most one crop, flip and
cutout, in that order, ahead of any other entry; the rest shows as `augment.extra`), and as `augment.pipeline`
otherwise. Run identities and report
columns are computed from that view, so a run recorded under the classic keys keeps its identity hash, and
`augment.cutout` stays a column a report can vary and answer by. Nothing here imports torch or the data layer: a
config is read (--help-config, spec validation) without either.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

# shorthand key -> (augmentation name, its option, the value meaning "no such augmentation" (main keys only))
SHORTHAND = {
    "crop": ("crop", "padding", 0),
    "crop_mode": ("crop", "mode", None),
    "flip": ("flip", "p", 0.0),
    "cutout": ("cutout", "size", 0),
    "cutout_count": ("cutout", "count", None),
}
CLASSIC = ("crop", "flip", "cutout")            # the classic order, ahead of every other entry
SHORTHAND_HELP = {
    "crop": "shorthand for the pipeline's {name: crop, padding: N} (random-crop padding in pixels, 4 is the classic "
            "CIFAR setting); 0: no crop",
    "crop_mode": "shorthand for the crop entry's mode: how the padding is filled (zeros, reflect)",
    "flip": "shorthand for the pipeline's {name: flip, p: P} (probability of a horizontal flip per image); 0: no flip",
    "cutout": "shorthand for the pipeline's {name: cutout, size: N} (Cutout hole side in pixels, DeVries & Taylor "
              "2017); 0: no Cutout",
    "cutout_count": "shorthand for the cutout entry's count: holes per image",
    "extra": "shorthand: entries appended to augment.pipeline, e.g. [{name: cutout, size: 8}]",
}
# Options added to an augmentation after the classic keys, at the value that means what the classic key meant.
NEUTRAL_OPTIONS = {("flip", "mode"): "random"}
# The values a config had before the pipeline existed, when it named no such augmentation.
CLASSIC_DEFAULTS = {"crop": 0, "crop_mode": "zeros", "flip": 0.0, "cutout": 0, "cutout_count": 1}


def apply_shorthand(section: Dict[str, Any], where: str = "augment") -> Dict[str, Any]:
    """An `augment` mapping that may hold shorthand keys -> the same mapping with only `pipeline` (and the other
    real keys). The pipeline's entries are copied, never edited in place."""
    out = {k: v for k, v in section.items() if k not in SHORTHAND and k != "extra"}
    pipeline = out.get("pipeline", [])
    if not isinstance(pipeline, list):
        return out  # the type check that follows names the key and what it wants
    pipeline = [_spec(e) for e in pipeline]
    for key in CLASSIC:
        if key in section:
            _set_main(pipeline, key, section[key])
    for key in ("crop_mode", "cutout_count"):
        if key in section:
            name, option, _ = SHORTHAND[key]
            entry = _entry(pipeline, name)
            if entry is not None:
                entry[option] = section[key]
    extra = section.get("extra") or []
    out["pipeline"] = pipeline + [_spec(e) for e in (extra if isinstance(extra, list) else [extra])]
    return out


def _spec(entry: Any) -> Any:
    """A bare name is the augmentation at its defaults, as the data layer reads it; a mapping is copied."""
    return {"name": entry} if isinstance(entry, str) else dict(entry) if isinstance(entry, dict) else entry


def _entry(pipeline: List[Any], name: str) -> Optional[dict]:
    return next((e for e in pipeline if isinstance(e, dict) and e.get("name") == name), None)


def _set_main(pipeline: List[Any], key: str, value: Any) -> None:
    name, option, none = SHORTHAND[key]
    if value == none or value is False or value is None:
        pipeline[:] = [e for e in pipeline if not (isinstance(e, dict) and e.get("name") == name)]
        return
    entry = _entry(pipeline, name)
    if entry is not None:
        entry[option] = value
        return
    before = CLASSIC[:CLASSIC.index(name)]  # after the last entry that comes earlier in the classic order
    at = max((i + 1 for i, e in enumerate(pipeline) if isinstance(e, dict) and e.get("name") in before), default=0)
    pipeline.insert(at, {"name": name, option: value})


def view(pipeline: List[Dict[str, Any]]) -> Dict[str, Any]:
    """A (defaults-filled) pipeline -> the classic keys when they express it exactly, else {'pipeline': [...]}.
    `extra` is left out when empty, as configs recorded before it existed had no such key."""
    out = dict(CLASSIC_DEFAULTS)
    rank = -1
    for i, entry in enumerate(pipeline):
        name = entry.get("name")
        if name not in CLASSIC or CLASSIC.index(name) <= rank:
            rest = pipeline[i:]
            break
        rank = CLASSIC.index(name)
        options = {k: v for k, v in entry.items() if k != "name" and NEUTRAL_OPTIONS.get((name, k), k) != v}
        keys = {opt: key for key, (n, opt, _) in SHORTHAND.items() if n == name}
        main = next(k for k in keys.values() if k in CLASSIC)
        if set(options) - set(keys) or options.get(SHORTHAND[main][1]) in (0, None, False):
            return {"pipeline": pipeline}  # an option or value the shorthand cannot say
        for opt, key in keys.items():
            if opt in options:
                out[key] = float(options[opt]) if key == "flip" else options[opt]
    else:
        rest = []
    if any(e.get("name") in CLASSIC for e in rest):
        return {"pipeline": pipeline}  # a second crop, or a crop after a flip: `augment.crop` would misreport it
    if rest:
        out["extra"] = rest
    return out


def classic_value(pipeline: List[Dict[str, Any]], key: str) -> Any:
    """What a shorthand key reads as for this pipeline (e.g. `augment.flip` is the flip entry's p, 0.0 without one)."""
    name, option, _ = SHORTHAND[key]
    entry = _entry(pipeline, name)
    if entry is None or option not in entry:
        return CLASSIC_DEFAULTS[key]
    return entry[option]
