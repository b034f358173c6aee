"""`cnnlab train`, `cnnlab evaluate`, `cnnlab predict`."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from cnnlab.cli.data_cmd import add_data_root, data_overrides
from cnnlab.errors import CnnlabError
from cnnlab.fileio import check_writable


def register(sub) -> None:
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
    p.add_argument("--help-config", action="store_true", help="list every config key with its default and meaning")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="loss and accuracy of a run's best checkpoint on a split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="val", help="val (default), test, train")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    add_data_root(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="write predictions.csv (id,label) for a split, e.g. the holdout set")
    p.add_argument("run_dir")
    p.add_argument("--split", default="holdout")
    p.add_argument("--out", default=None, help="CSV path (default RUN_DIR/predictions.csv)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    add_data_root(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("export", help="write a run's model as ONNX or TorchScript, normalisation folded in",
                       description="Export the model of a run's best (or last) checkpoint. The exported graph takes "
                                   "float32 NCHW images in [0, 1] and returns logits; the run's mean/std are inside "
                                   "it. A JSON file beside it lists the classes and the input contract.")
    p.add_argument("run_dir")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", help="file to write (default RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    add_data_root(p)
    p.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    from cnnlab.training.config import describe_keys, load_config
    from cnnlab.training.distributed import cleanup
    from cnnlab.training.trainer import Trainer, resume

    if args.help_config:
        for key, default, text in describe_keys():
            print(f"{key:26s} {str(default):14s} {text}")
        return 0
    overrides = list(args.overrides) + data_overrides(args)
    if args.resume:
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
        summary = (resume(args.resume, data_root=args.data_root, overrides=args.overrides) if args.resume
                   else Trainer(cfg, overwrite=args.overwrite).fit())
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        cleanup()
    return 0 if summary["status"] in ("finished", "stopped") else 1


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def _evaluate(args) -> int:
    from cnnlab.training.inference import evaluate_run, load_run

    run = load_run(args.run_dir, args.checkpoint, args.data_root, download=args.download)
    res = evaluate_run(run, args.split)
    print(json.dumps({"run": str(args.run_dir), "checkpoint": run.checkpoint.name, "split": args.split,
                      "images": len(run.ds.split(args.split)), **res}))
    return 0


def _predict(args) -> int:
    from pathlib import Path

    from cnnlab.training.inference import load_run, predictions, write_predictions

    out = Path(args.out) if args.out else Path(args.run_dir) / "predictions.csv"
    if out.exists() and not args.force:  # refuse before the expensive part
        raise CnnlabError(f"{str(out)!r} exists; pass --force to overwrite it, or choose another --out")
    check_writable(out, "predictions file")
    run = load_run(args.run_dir, args.checkpoint, args.data_root, download=args.download)
    ids, labels = predictions(run, args.split)
    write_predictions(out, ids, labels, force=args.force)
    print(f"wrote {len(ids):,} predictions for split {args.split!r} to {out}")
    return 0


def _export(args) -> int:
    from cnnlab.training.export import export_run
    from cnnlab.training.inference import load_run

    if args.out:
        check_writable(args.out, "export file")  # before the model and data are loaded
    paths = export_run(load_run(args.run_dir, args.checkpoint, args.data_root, device="cpu",
                                download=args.download), args.format,
                       args.out)
    print(f"wrote {paths['model']} ({args.format}) and {paths['metadata']}")
    return 0
