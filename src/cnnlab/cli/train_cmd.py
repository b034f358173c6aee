"""`cnnlab train`, `cnnlab evaluate`, `cnnlab predict`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import signal
import threading

from cnnlab.cli.common import add_data_root, data_overrides
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text, check_writable
from cnnlab.training.config import describe_keys, load_config


SPLIT_HELP = ("val (the validation split the run was trained against), test (labelled: the official one of "
              "fashion-mnist and the CIFAR-10 python batches, or an image folder's test/), train, holdout "
              "(unlabelled: the CIFAR-10 JPEG copy's 10,000 images, an image folder's holdout/); a split the run's "
              "dataset lacks is an error that lists the ones it has")
TTA_HELP = ("test-time augmentation: none (default), flip (image + mirror), flip-translate (each also shifted by one "
            "pixel up/down/left/right: 10 views); softmax averaged over the views")


def register(sub) -> None:
    _add_train(sub)
    _add_optimizers(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_export(sub)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model (defaults < -c YAML < key=value overrides)",
                       description="Train a model into runs/<name>/. Config precedence: defaults < -c FILE < "
                                   "key=value overrides (dotted keys, e.g. optim.lr=0.05 model.options.batch_norm=true)."
                                   " See --help-config for every key.")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("-c", "--config", help="YAML config file")
    add_data_root(p)  # sets data.root
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt; key=value may "
                                                       "change train.epochs (extend a finished run), train.max_time, "
                                                       "train.patience, train.progress, train.threads")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder of the same name")
    p.add_argument("--out", metavar="DIR", help="parent folder of the run folder, as in sweep (config key out; "
                                                "default runs)")
    p.add_argument("--help-config", action="store_true", help="list every config key with its default and meaning")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_train)


def _add_optimizers(sub) -> None:
    p = sub.add_parser("optimizers", help="each optimizer's update equations and hyperparameters (optim.*)")
    p.add_argument("names", nargs="*", metavar="NAME", help="optimizers to show (default: all)")
    p.set_defaults(func=_optimizers)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="loss, accuracy, per-class accuracy and confusion matrix of a run's best "
                                        "checkpoint on a split",
                       description="Print per-class accuracy and a JSON line (loss, accuracy); write "
                                   "RUN_DIR/evaluation-SPLIT.json, confusion-SPLIT.csv and confusion-SPLIT.png.")
    p.add_argument("run_dir")
    p.add_argument("--split", default="val", help="default val; " + SPLIT_HELP)
    p.add_argument("--tta", choices=("none", "flip", "flip-translate"), default="none", help=TTA_HELP)
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    add_data_root(p)
    p.set_defaults(func=_evaluate)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="write predictions.csv (id,label) for a split, e.g. the holdout set")
    p.add_argument("run_dir")
    p.add_argument("--split", default="holdout", help="default holdout; " + SPLIT_HELP)
    p.add_argument("--images", nargs="+", metavar="PATH", help="predict these image files or folders instead of a "
                                                               "split (any size: resized and centre-cropped to the "
                                                               "model's input, and said so)")
    p.add_argument("--probs", action="store_true", help="also write the class name and one probability column per "
                                                        "class (p_<class>)")
    p.add_argument("--tta", choices=("none", "flip", "flip-translate"), default="none", help=TTA_HELP)
    p.add_argument("--out", default=None, help="CSV path (default RUN_DIR/predictions.csv)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    add_data_root(p)
    p.set_defaults(func=_predict)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a run's model as ONNX or TorchScript, normalisation folded in",
                       description="Export the model of a run's best (or last) checkpoint. The exported graph takes "
                                   "float32 NCHW images in [0, 1] and returns logits; the run's mean/std are inside "
                                   "it. A JSON file beside it lists the classes and the input contract.")
    p.add_argument("run_dir")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", help="file to write (default RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt); "
                                 "its metadata goes to OUT.json")
    p.add_argument("--force", action="store_true", help="replace an existing export file (never a run's own files)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    add_data_root(p)
    p.set_defaults(func=_export)

def _train(args: argparse.Namespace) -> int:
    if args.help_config:
        for key, default, text in describe_keys():
            print(f"{key:26s} {str(default):14s} {text}")
        return 0
    # here, not at the top: torch and the heavy layers load only for the command that runs, after --help-config
    from cnnlab.training.distributed import cleanup
    from cnnlab.training.trainer import Trainer, resume

    overrides = list(args.overrides) + data_overrides(args) + ([f"out={args.out}"] if args.out else [])
    if args.resume:
        if args.out:
            raise CnnlabError("--resume continues the run in its own folder; --out cannot be combined with it")
        if args.config:
            raise CnnlabError("--resume uses the run's own config.yaml; -c cannot be combined with it (key=value "
                              "overrides may extend the run: train.epochs=N)")
    else:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            print(cfg.to_yaml(), end="")
            return 0
    # a killed job (SIGTERM) stops like Ctrl-C: summary written, resume command printed (main thread only)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _sigterm) if main_thread else None
    try:  # under torchrun the Trainer joins the process group; leave it cleanly either way
        summary = (resume(args.resume, data_root=args.data_root, overrides=args.overrides,
                          download=args.download) if args.resume
                   else Trainer(cfg, overwrite=args.overwrite).fit())
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        cleanup()
    return 0 if summary["status"] in ("finished", "stopped") else 1


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def _optimizers(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.training.optim import OPTIMIZERS, describe_optimizer

    defaults = {key: (default, meaning) for key, default, meaning in describe_keys()}
    blocks = ["\n".join(describe_optimizer(n, defaults)) for n in (args.names or OPTIMIZERS.names())]
    print("g: gradient of the step's loss (+ weight_decay*w for coupled L2), eta: the lr at this step, w: weights;\n"
          "every operation is per element.\n\n" + "\n\n".join(blocks))
    return 0


def _evaluate(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.plotting import save_figure
    from cnnlab.training.evaluation import confusion_csv, confusion_figure
    from cnnlab.training.inference import evaluate_run, load_run

    run = load_run(args.run_dir, args.checkpoint, args.data_root, download=args.download)
    res = evaluate_run(run, args.split, args.tta)
    classes = list(run.ds.classes)
    width = max(len(c) for c in classes)
    print(f"{'class':{width}s}  images  accuracy")
    for row in res["per_class"]:
        acc = f"{100 * row['acc']:7.2f}%" if row["acc"] is not None else "       -"
        print(f"{row['class']:{width}s}  {row['images']:6,d}  {acc}")
    if args.tta != "none":
        print(f"test-time augmentation {args.tta}: {100 * res['acc']:.2f}% against {100 * res['acc_without_tta']:.2f}% "
              f"without ({100 * res['tta_gain']:+.2f} points)")
    folder = Path(args.run_dir)
    stem = f"{args.split}" + ("" if args.tta == "none" else f"-tta-{args.tta}")
    record = {"run": str(args.run_dir), "checkpoint": run.checkpoint.name, "split": args.split,
              "images": len(run.ds.split(args.split)), **res}
    atomic_write_text(folder / f"evaluation-{stem}.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(folder / f"confusion-{stem}.csv", confusion_csv(res["confusion"], classes))
    tta = "" if args.tta == "none" else f", TTA {args.tta}"
    title = f"{folder.name}: {args.split} split{tta}, {100 * res['acc']:.2f}% accurate"
    save_figure(confusion_figure(res["confusion"], classes, title), folder / f"confusion-{stem}.png")
    print(f"wrote {folder / f'evaluation-{stem}.json'}, confusion-{stem}.csv and confusion-{stem}.png")
    print(json.dumps({k: v for k, v in record.items() if k not in ("per_class", "confusion")}))
    return 0


def _predict(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.data.images import read_image_files
    from cnnlab.training.inference import load_run, predictions, write_predictions

    out = Path(args.out) if args.out else Path(args.run_dir) / "predictions.csv"
    if out.exists() and not args.force:  # refuse before the expensive part
        raise CnnlabError(f"{str(out)!r} exists; pass --force to overwrite it, or choose another --out")
    check_writable(out, "predictions file")
    run = load_run(args.run_dir, args.checkpoint, args.data_root, download=args.download)
    images = None
    if args.images:
        images, note = read_image_files(args.images, run.ds.in_channels, run.ds.image_size)
        print(f"note: {note}")
    ids, labels, probs = predictions(run, args.split, args.tta, images)
    write_predictions(out, ids, labels, force=args.force, classes=list(run.ds.classes) if args.probs else None,
                      probs=probs if args.probs else None)
    what = "your images" if args.images else f"split {args.split!r}"
    print(f"wrote {len(ids):,} predictions for {what} to {out}" + (f" (tta {args.tta})" if args.tta != "none" else ""))
    return 0


def _export(args) -> int:
    # here, not at the top: torch and the heavy layers load only for the command that runs (start-up time)
    from cnnlab.training.export import FORMATS, check_export_paths, export_run
    from cnnlab.training.inference import load_run

    # before the model and data are loaded: an export that would replace a file is refused at once
    if args.out or (Path(args.run_dir) / "config.yaml").is_file():
        check_export_paths(args.out or Path(args.run_dir) / f"model{FORMATS[args.format]}", args.force)
    paths = export_run(load_run(args.run_dir, args.checkpoint, args.data_root, device="cpu",
                                download=args.download), args.format, args.out, force=args.force)
    print(f"wrote {paths['model']} ({args.format}) and {paths['metadata']}")
    return 0
