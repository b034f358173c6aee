"""`cnnlab models`, `cnnlab summary`, `cnnlab calc ...`, `cnnlab sanity`: the model zoo and its accounting.

Argument parsing and wiring only; the work is done in cnnlab.models (registry, summary, calc, sanity).
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, Tuple

from cnnlab.cli.common import add_data_root, key_values
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text


def register(sub) -> None:
    p = sub.add_parser("models", help="list the registered models with input shape and parameter count")
    p.set_defaults(func=_models)

    p = sub.add_parser("summary", help="per-layer table: output shape, params (weights, biases), MACs, activations",
                       description="Per-layer table of MODEL. MACs are multiply-accumulates of conv and linear "
                                   "layers (FLOPs = 2 x MACs); activations are layer output elements.")
    p.add_argument("model")
    p.add_argument("options", nargs="*", metavar="key=value", help="model options read as YAML, e.g. batch_norm=true hidden=[500,300]")
    p.add_argument("--input", help="input shape CxHxW with H = W, e.g. 1x28x28 (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=1, help="batch size N (MACs and activations are per batch)")
    p.add_argument("--dtype", default="float32", help="dtype for memory in bytes: float32, float16, bfloat16, float64")
    p.add_argument("--csv", metavar="FILE", help="also write the rows and a TOTAL row to FILE")
    p.set_defaults(func=_summary)

    _register_calc(sub)

    p = sub.add_parser("sanity", help="initial loss of the untrained model on a batch, against ln(classes)",
                       description="Cross-entropy of the untrained MODEL on one batch (training mode, no update) "
                                   "against ln(classes); exit status 1 when it is not within 25% of ln(classes).")
    p.add_argument("model")
    p.add_argument("options", nargs="*", metavar="key=value", help="model options")
    p.add_argument("--dataset", help="dataset name (default: cifar10 for 3-channel models, fashion-mnist for "
                                     "1-channel ones)")
    add_data_root(p)  # with it, a real training batch; without, a random standard-normal batch with random labels
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_sanity)


def _register_calc(sub) -> None:
    calc = sub.add_parser("calc", help="the course's computation questions, with the working shown")
    csub = calc.add_subparsers(dest="calc_command", metavar="QUESTION", parser_class=type(calc))
    calc.set_defaults(func=lambda a: calc.print_help() or 2)
    _add_layer_calcs(csub)
    _add_network_calcs(csub)


def _add_layer_calcs(csub) -> None:
    """The questions about one layer or a stack of them: conv, fc, rf, separable."""
    p = csub.add_parser("conv", help="output shape, parameters, MACs of a conv layer (K filters of FxF)")
    p.add_argument("--input", required=True, help="HxWxC, e.g. 32x32x3")
    p.add_argument("--filters", type=int, required=True, help="number of filters K")
    p.add_argument("--size", type=int, required=True, help="filter size F (F x F)")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", default="0", help="P in pixels, or 'same' / 'valid'")
    p.add_argument("--no-bias", action="store_true")
    p.set_defaults(func=_calc_conv)

    p = csub.add_parser("fc", help="parameters of a fully connected layer on an HxWxC input")
    p.add_argument("--input", required=True, help="HxWxC, e.g. 7x7x512")
    p.add_argument("--units", type=int, required=True)
    p.add_argument("--no-bias", action="store_true")
    p.set_defaults(func=_calc_fc)

    p = csub.add_parser("rf", help="receptive field of N stacked FxF convolutions: (N*F - N + 1)^2, or of a "
                                   "registered model layer by layer (--model)")
    p.add_argument("--model", help="a registered model (stride and kernel of every layer), e.g. resnet20")
    p.add_argument("--layers", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--channels", type=int, default=0, help="C: also compare weights with one large conv")
    p.set_defaults(func=_calc_rf)

    p = csub.add_parser("separable", help="depthwise-separable vs regular convolution: MACs and speed-up")
    p.add_argument("--input", required=True, help="HxWxC, e.g. 112x112x64")
    p.add_argument("--filters", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", default="same", help="P in pixels, or 'same' (default) / 'valid'")
    p.set_defaults(func=_calc_separable)


def _add_network_calcs(csub) -> None:
    """The questions about a whole network or module: separable-net, alexnet, inception, vgg19."""
    p = csub.add_parser("separable-net", help="a whole registered model with every FxF conv made depthwise-"
                                              "separable: MACs per layer and the total speed-up")
    p.add_argument("model", help="e.g. vgg_a, resnet20, simplenn")
    p.set_defaults(func=_calc_separable_net)

    p = csub.add_parser("alexnet", help="AlexNet's parameters with the working per layer (size, stride, padding)")
    p.set_defaults(func=_calc_alexnet)

    p = csub.add_parser("inception", help="Inception module output size and multiplies, naive vs 1x1-reduced")
    p.add_argument("--input", default="28x28x192", help="HxWxC (default 28x28x192, GoogLeNet inception 3a)")
    for key, default in (("n1x1", 64), ("n3x3-reduce", 96), ("n3x3", 128), ("n5x5-reduce", 16), ("n5x5", 32),
                         ("pool-proj", 32)):
        p.add_argument(f"--{key}", type=int, default=default, help=f"filters (default {default}; 0 leaves it out)")
    p.set_defaults(func=_calc_inception)

    p = csub.add_parser("vgg19", help="VGG19 at 224x224: activation memory and parameters per layer")
    p.add_argument("--bytes", type=int, default=4, help="bytes per value (4 = float32)")
    p.set_defaults(func=_calc_vgg19)


# ---------------------------------------------------------------------------------------------------------------
# parsing helpers


def parse_dims(text: str, what: str, n: int = 3) -> Tuple[int, ...]:
    """'32x32x3' (also 'X', '×' or ',') -> (32, 32, 3); CnnlabError naming `what` otherwise."""
    parts = re.split(r"[x×X,]", str(text).strip())
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != n or min(dims) <= 0:
        raise CnnlabError(f"{what}: expected {n} positive integers like {'x'.join(['32'] * (n - 1) + ['3'])}, "
                          f"got {text!r}")
    return dims


def parse_dtype(name: str):
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    import torch

    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
             "float64": torch.float64}
    if name not in table:
        raise CnnlabError(f"--dtype {name!r} is not one of {', '.join(table)}")
    return table[name]


def _padding(text: str):
    return text if text in ("same", "valid") else _int(text, "--padding")


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CnnlabError(f"{what}: expected an integer, 'same' or 'valid', got {text!r}") from None


def _model_kwargs(args) -> Dict[str, Any]:
    kw = key_values(args.options, "model option")
    if getattr(args, "input", None):
        c, h, w = parse_dims(args.input, "--input (CxHxW)")
        if h != w:
            raise CnnlabError(f"--input {args.input}: models take square inputs (H = W)")
        kw.update(in_channels=c, input_size=h)
    return kw


# ---------------------------------------------------------------------------------------------------------------
# commands


def _models(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import list_models, model_info

    rows = [model_info(n) for n in list_models()]
    print(f"{'name':18s} {'input':>10s} {'classes':>7s} {'params':>13s}  description")
    for r in rows:
        c, h, w = r["input_shape"]
        classes = "-" if r["num_classes"] is None else str(r["num_classes"])
        print(f"{r['name']:18s} {f'{c}x{h}x{w}':>10s} {classes:>7s} {r['params']:>13,}  {r['description']}")
    return 0


def _summary(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    import torch

    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import create_model
    from cnnlab.models.summary import summarize

    dtype = parse_dtype(args.dtype)
    if args.batch_size <= 0:
        raise CnnlabError(f"--batch-size must be >= 1, got {args.batch_size}")
    with torch.device("meta"):  # shapes only: VGG19 at 224 is summarised in well under a second
        model = create_model(args.model, **_model_kwargs(args))
    s = summarize(model, batch_size=args.batch_size, dtype=dtype)
    print(s.to_text())
    if args.csv:
        atomic_write_text(args.csv, s.to_csv())
        print(f"wrote {args.csv}")
    return 0


def _calc_conv(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import calc

    h, w, c = parse_dims(args.input, "--input (HxWxC)")
    print(calc.conv(h, w, c, args.filters, args.size, args.stride, _padding(args.padding),
                    bias=not args.no_bias).to_text())
    return 0


def _calc_fc(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import calc

    h, w, c = parse_dims(args.input, "--input (HxWxC)")
    print(calc.fc(h, w, c, args.units, bias=not args.no_bias).to_text())
    return 0


def _calc_rf(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import calc

    if args.model:
        print(calc.receptive_field_of(args.model).to_text())
        return 0
    if args.layers is None or args.size is None:
        raise CnnlabError("calc rf needs --layers N --size F (a stack of FxF convolutions) or --model NAME")
    print(calc.receptive_field(args.layers, args.size, args.channels).to_text())
    return 0


def _calc_separable_net(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import calc

    print(calc.separable_network(args.model).to_text())
    return 0


def _calc_alexnet(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import calc

    print(calc.alexnet_params().to_text())
    return 0


def _calc_separable(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import calc

    h, w, c = parse_dims(args.input, "--input (HxWxC)")
    print(calc.separable(h, w, c, args.filters, args.size, args.stride, _padding(args.padding)).to_text())
    return 0


def _calc_inception(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import calc

    h, w, c = parse_dims(args.input, "--input (HxWxC)")
    print(calc.inception(h, w, c, args.n1x1, args.n3x3_reduce, args.n3x3, args.n5x5_reduce, args.n5x5,
                         args.pool_proj).to_text())
    return 0


def _calc_vgg19(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import calc

    if args.bytes <= 0:
        raise CnnlabError(f"--bytes must be >= 1, got {args.bytes}")
    print(calc.vgg19_table(args.bytes).to_text())
    return 0


def _sanity(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    import torch

    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import create_model
    from cnnlab.models.sanity import initial_loss_check

    if args.batch_size <= 0:
        raise CnnlabError(f"--batch-size must be >= 1, got {args.batch_size}")
    torch.manual_seed(args.seed)
    _check_sanity_memory(args)
    model = create_model(args.model, **_model_kwargs(args))
    x, y, source = _sanity_batch(model, args)
    r = initial_loss_check(model, x, y)
    print(f"{args.model}: initial loss {r['loss']:.4f} on {source} ({r['batch_size']} images); "
          f"ln({r['num_classes']}) = {r['expected']:.4f}; ratio {r['ratio']:.3f} -> "
          f"{'OK' if r['ok'] else 'SUSPICIOUS (expected within 25% of ln C)'}")
    return 0 if r["ok"] else 1


def _check_sanity_memory(args) -> None:
    """Refuse, in a second, a model or batch that cannot fit: the float32 weights (counted on the meta device,
    where nothing is allocated) and the input batch, against the memory available, as `train` does before it
    builds anything. Activations are not counted: a floor, to stop the impossible (a 10^11-weight layer)."""
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    import torch

    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.models import create_model
    from cnnlab.training.runtime import check_memory

    try:
        with torch.device("meta"):
            model = create_model(args.model, **_model_kwargs(args))
        params = sum(p.numel() for p in model.parameters())
        pixels = math.prod(model.input_shape)
    except CnnlabError:
        raise
    except Exception:  # a model that cannot be built on meta is built for real and fails there, if at all
        return
    check_memory(torch.device("cpu"), 4 * params + 4 * args.batch_size * pixels,
                 f"{args.model} ({params:,} parameters) with a batch of {args.batch_size:,} images",
                 "make the model (its options) or --batch-size smaller")


def _sanity_batch(model, args):
    """A real batch when --data-root is given and the data layer can load it; else a synthetic one (said so)."""
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    import torch

    c, h, w = model.input_shape
    n_cls = model.num_classes
    if n_cls is None:
        raise CnnlabError(f"model {args.model!r} is a bare module without a classifier; pass num_classes=10")
    if args.data_root:
        return _real_batch(args, c, h, n_cls)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, c, h, w, generator=g)
    y = torch.randint(0, n_cls, (args.batch_size,), generator=g)
    return x, y, "a synthetic N(0,1) batch with random labels (give --data-root for real images)"


def _real_batch(args, c: int, size: int, n_cls: int):
    """One shuffled, standardised training batch, loaded the way the trainer loads its data."""
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    import torch

    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.data import load_dataset
    from cnnlab.data.loader import BatchLoader

    name = args.dataset or ("fashion-mnist" if c == 1 else "cifar10")
    ds = load_dataset(name, root=args.data_root, val_size=0, seed=args.seed, train_subset=args.batch_size,
                      download=args.download)
    if (ds.in_channels, ds.image_size, ds.num_classes) != (c, size, n_cls):
        raise CnnlabError(f"dataset {name!r} has {ds.in_channels}x{ds.image_size}x{ds.image_size} images and "
                          f"{ds.num_classes} classes, but the model was built for {c}x{size}x{size} and {n_cls}; "
                          f"pass --input / num_classes= or another --dataset")
    loader = BatchLoader(ds.train, min(args.batch_size, len(ds.train)), shuffle=True, mean=ds.mean, std=ds.std,
                         device=torch.device("cpu"), seed=args.seed)
    x, y = next(iter(loader))
    return x, y, f"{name} training images"
