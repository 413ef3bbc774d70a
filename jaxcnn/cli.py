"""The `jaxcnn` command: list, train and launch experiments; predict, export and evaluate runs; tools.

Experiments are found by name in the checkout's `experiments/` folder (the current directory's,
or the one beside the installed package in an editable install) or by a file path, so an
installed jaxcnn never ships a package called `experiments`.

Every subcommand runs under `jaxcnn.errors.guard`: an error prints one line
(`jaxcnn: error: <file>: <problem>`) and a hint, and exits 2 for bad input, 1 for a failure;
`--debug` anywhere before a `--` (or JAXCNN_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from jaxcnn import errors
from jaxcnn.config import add_flags
from jaxcnn.config.checks import checkpoint_choice, non_negative_int, port_number, positive_float, positive_int
from jaxcnn.launch import DEFAULT_GRACE

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment_dirs() -> list[str]:
    dirs = []
    for root in (os.getcwd(), _PACKAGE_PARENT):
        d = os.path.join(root, "experiments")
        if os.path.isdir(d) and d not in dirs:
            dirs.append(d)
    return dirs


def list_experiments() -> dict[str, str]:
    """Experiment name -> file path."""
    found = {}
    for d in experiment_dirs():
        for f in sorted(os.listdir(d)):
            if f.endswith(".py") and not f.startswith("_"):
                found.setdefault(f[:-3], os.path.join(d, f))
    return found


def load_experiment(name_or_path: str):
    """The module of an experiment, by name (see `jaxcnn list`) or by .py path."""
    path = name_or_path if name_or_path.endswith(".py") else list_experiments().get(name_or_path)
    if path is None or not os.path.exists(path):
        known = ", ".join(list_experiments()) or "none found (run from the checkout, or pass a path)"
        raise errors.UsageError(f"unknown experiment {name_or_path!r}; known: {known}")
    spec = importlib.util.spec_from_file_location(f"_jaxcnn_experiment_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cmd_list(args) -> int:
    for name, path in list_experiments().items():
        config = load_experiment(path).get_config()
        print(f"{name:24s} {config.description}")
    return 0


def _cmd_train(args) -> int:
    from jaxcnn import experiment

    # The same entry as `python -m experiments.NAME`; Preempted (SIGTERM, checkpoint written)
    # leaves through the guard with its exit status 143.
    experiment.run(load_experiment(args.experiment).get_config(), args)
    return 0


def _cmd_launch(args) -> int:
    from jaxcnn.launch import launch

    command = args.command_args[1:] if args.command_args[:1] == ["--"] else args.command_args
    return launch(command, args.processes, args.devices_per_process, port=args.port, timeout=args.timeout,
                  grace=args.grace)


def _add_launch(sub) -> None:
    p = sub.add_parser("launch", help="run N local processes as one multi-host job (cluster rehearsal)",
                       description="Run a jaxcnn subcommand (or a .py script) in N local CPU processes "
                                   "joined by jax.distributed, e.g. "
                                   "`jaxcnn launch --processes 2 -- train mnist_cnn --epochs 1`.")
    p.add_argument("--processes", type=positive_int, required=True, help="number of processes (hosts)")
    p.add_argument("--devices-per-process", type=positive_int, default=1, help="fake CPU devices per process")
    p.add_argument("--port", type=port_number, help="coordinator port on localhost (default: a free one)")
    p.add_argument("--timeout", type=positive_float, help="stop all processes after this many seconds")
    p.add_argument("--grace", type=positive_float, default=DEFAULT_GRACE, metavar="SECONDS",
                   help="on SIGTERM/Ctrl-C, wait this long for the processes to save and exit before "
                        f"killing them (default {DEFAULT_GRACE:g})")
    p.add_argument("command_args", nargs=argparse.REMAINDER, help="-- SUBCOMMAND ARGS... or -- script.py ARGS...")
    p.set_defaults(fn=_cmd_launch)


def _cmd_augment_preview(args) -> int:
    from jaxcnn.data import load_dataset
    from jaxcnn.data.augment import save_augment_preview

    ds = load_dataset(args.dataset, data_dir=args.data_dir)
    images = ds.x_train[: args.count]
    if args.resize:
        from jaxcnn.data.image_folder import resize_images

        images = resize_images(images, args.resize)
    titles = [ds.class_names[int(i)] for i in ds.y_train[: args.count]]
    print(save_augment_preview(images, args.augment, args.out, titles=titles, seed=args.seed))
    return 0


def _cmd_prepare(args) -> int:
    from jaxcnn.data.records import prepare

    manifest = prepare(args.source, args.out, image_size=args.image_size, color_mode=args.color_mode,
                       on_error=args.on_error, limit=args.limit, shard_size=args.shard_size,
                       data_dir=args.data_dir, progress=not args.quiet)
    counts = ", ".join(f"{s} {v['num_examples']}" for s, v in manifest["splits"].items())
    print(f"{args.out}: {counts} examples of {tuple(manifest['image_shape'])}, "
          f"{len(manifest['class_names'])} classes (train with --data prepared:{args.out})")
    return 0


def _add_tools(sub) -> None:
    p = sub.add_parser("prepare", help="write a dataset once as ArrayRecord shards, streamed in training",
                       description="Decode (and resize) a dataset into ArrayRecord shards with labels, class "
                                   "names and a manifest (counts, sha256); rerun the same command to "
                                   "continue an interrupted preparation. Read it with prepared:DIR.")
    p.add_argument("source", help="image_folder:PATH (folder or .tar.gz), tfds:NAME or a dataset name (mnist)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--image-size", type=positive_int, nargs="+", metavar="N",
                   help="resize to N (square) or H W; without it all images must share one size")
    p.add_argument("--color-mode", choices=("rgb", "grayscale", "rgba"), default="rgb",
                   help="channels of image-folder images (default rgb)")
    p.add_argument("--on-error", choices=("skip", "raise"), default="skip",
                   help="undecodable images: skip them (counted in the manifest) or fail")
    p.add_argument("--limit", type=positive_int, help="at most N examples per split (spread over classes)")
    p.add_argument("--shard-size", type=positive_int, default=4096, help="examples per record file")
    p.add_argument("--data-dir", help="folder holding the datasets (default: $JAXCNN_DATA_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=_cmd_prepare)
    p = sub.add_parser("augment-preview", help="a PNG grid of augmented training images",
                       description="Each row: a training image, then augmented copies (seeded).")
    p.add_argument("dataset", help="dataset name, e.g. mnist or cifar10")
    p.add_argument("--augment", default="A", help="recipe (A, B) or key=value,... parameters")
    p.add_argument("--out", default="augment_preview.png", help="output PNG path")
    p.add_argument("--count", type=positive_int, default=5, help="how many images (rows)")
    p.add_argument("--resize", type=positive_int, help="resize images to this square size first")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--data-dir", help="folder holding the datasets (default: $JAXCNN_DATA_DIR)")
    p.set_defaults(fn=_cmd_augment_preview)
    # Listed here for --help; main() hands its arguments to the converter's own parser.
    sub.add_parser("convert-weights", add_help=False,
                   help="Keras weights into a registered model -> an Orbax checkpoint of Flax variables")
    sub.add_parser("import-keras", add_help=False,
                   help="a whole Keras model (.keras, full .h5) -> a Flax module spec + variables")


def _checkpoint_arg(p) -> None:
    p.add_argument("--checkpoint", type=checkpoint_choice, default="auto", metavar="WHICH",
                   help="weights: auto (final, else latest checkpoint), final, best, latest, or a step number")


def _cmd_predict(args) -> int:
    import json

    from jaxcnn.predict import load_predictor, unusable_files, write_csv

    predictor = load_predictor(args.workdir, checkpoint=args.checkpoint, batch_size=args.batch_size)
    # "skip" is "list" with the failed rows left out here, so that nothing usable is still an error.
    rows = predictor.predict_files(args.paths, top_k=args.top_k, on_error="list" if args.on_error == "skip"
                                   else args.on_error, convert=args.convert, progress=not args.quiet)
    failed = [r for r in rows if r.error is not None]
    if args.on_error == "skip":
        rows = [r for r in rows if r.error is None]
    for r in rows:
        if r.error:
            print(f"{r.source}: ERROR {r.error}")
        else:
            print(f"{r.source}: " + ", ".join(f"{c} ({p:.4f})" for c, p in r.top))
    if args.csv:
        write_csv(rows, args.csv)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.to_json() for r in rows], f, indent=2)
    if failed and not any(r.error is None for r in rows):
        raise unusable_files(failed, len(failed))  # nothing usable: bad input, exit 2
    if failed and args.on_error == "list":
        print(f"jaxcnn: warning: {len(failed)} of {len(rows)} file(s) could not be used", file=sys.stderr)
    return 0


def _cmd_export(args) -> int:
    from jaxcnn import export
    from jaxcnn.predict import load_predictor, load_test_split

    export.require(args.format)  # before loading anything: a missing runtime is named at once
    predictor = load_predictor(args.workdir, checkpoint=args.checkpoint)
    path = args.out or os.path.join(args.workdir, "export", export.DEFAULT_NAMES[args.format])
    export.export(predictor, args.format, path)
    if args.check:
        images, _ = load_test_split(predictor.card, data_dir=args.data_dir, limit=args.check)
        err = export.check_export(predictor, args.format, path, images)
        print(f"{path}: checked in its runtime on {len(images)} test images: relative error {err:.2g} "
              f"(allowed {export.TOLERANCE[args.format]:g})", file=sys.stderr)
    print(path)
    return 0


def _cmd_evaluate(args) -> int:
    from jaxcnn import report
    from jaxcnn.parallel import setup
    from jaxcnn.run import RunFolder

    setup(fake_devices=args.fake_devices)
    from jaxcnn.predict import load_predictor, load_test_split

    predictor = load_predictor(args.workdir, checkpoint=args.checkpoint, batch_size=args.batch_size)
    card = predictor.card
    x, y = load_test_split(card, data_dir=args.data_dir, limit=args.limit)
    metrics = report.write_report(args.workdir, predictor.predict(x), y, x, card.class_names,
                                  title=card.experiment or card.model)
    RunFolder(args.workdir).update_metrics({**metrics, "report_checkpoint": args.checkpoint,
                                            "report_weights": predictor.source})
    print(f"{args.workdir}: accuracy {metrics['report_accuracy']:.4f} on {metrics['report_examples']} test "
          "examples; per-class metrics in metrics.json, confusion.png, errors.png")
    return 0


def _add_use(sub) -> None:
    p = sub.add_parser("predict", help="classify image files with a trained run",
                       description="Top-k classes for image files, folders and .zip/.tar(.gz) archives, "
                                   "resized and scaled as the run trained.")
    p.add_argument("workdir", help="the run's folder (e.g. runs/mnist_cnn)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or archives")
    p.add_argument("--top-k", type=positive_int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--csv", help="also write the results to this CSV file")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--on-error", choices=("list", "skip", "fail"), default="list",
                   help="unreadable or unfitting files: list them (default), skip them, or fail")
    p.add_argument("--convert", action="store_true",
                   help="convert images of another channel count (RGB <-> grayscale) instead of refusing")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _checkpoint_arg(p)
    p.set_defaults(fn=_cmd_predict)

    from jaxcnn.export import FORMATS

    p = sub.add_parser("export", help="export a trained run: SavedModel, TFLite, ONNX or Keras",
                       description="Write the run's model (raw pixels in, probabilities out, any batch "
                                   "size) and check it in its own runtime on the run's test images.")
    p.add_argument("workdir", help="the run's folder")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", help="output path (default: WORKDIR/export/savedmodel|model.tflite|model.onnx|model.keras)")
    p.add_argument("--check", type=non_negative_int, default=64, metavar="N",
                   help="compare with jaxcnn on the first N test images (default 64; 0: no check)")
    p.add_argument("--data-dir", help="folder holding the datasets (default: $JAXCNN_DATA_DIR)")
    _checkpoint_arg(p)
    p.set_defaults(fn=_cmd_export)

    p = sub.add_parser("evaluate", help="evaluation report: per-class metrics, confusion.png, errors.png",
                       description="Evaluate a trained run on its dataset's test split; writes per-class "
                                   "precision/recall/accuracy and the confusion matrix into metrics.json, "
                                   "confusion.png and errors.png.")
    p.add_argument("workdir", help="the run's folder")
    p.add_argument("--data-dir", help="folder holding the datasets (default: $JAXCNN_DATA_DIR)")
    p.add_argument("--limit", type=positive_int, help="only N test examples, spread over the classes")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--fake-devices", type=positive_int, metavar="K", help="run on K fake CPU devices")
    _checkpoint_arg(p)
    p.set_defaults(fn=_cmd_evaluate)


def _cmd_summary(args) -> int:
    from jaxcnn.models import TUTORIAL_INPUT_SHAPES, get_model, list_models
    from jaxcnn.train.summary import model_summary

    if args.model not in list_models():
        raise SystemExit(f"jaxcnn summary: unknown model {args.model!r}; known: {', '.join(list_models())}")
    shape = (tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape
             else TUTORIAL_INPUT_SHAPES.get(args.model))
    if shape is None:
        raise SystemExit(f"jaxcnn summary: give --input-shape for {args.model}")
    print(model_summary(get_model(args.model), shape, flops=not args.no_flops))
    return 0


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="a model's layers, output shapes, parameters and FLOPs (Keras-style)")
    p.add_argument("model", help="model name (see jaxcnn.models.list_models)")
    p.add_argument("--input-shape", metavar="H,W,C", help="default: the tutorial's input shape")
    p.add_argument("--no-flops", action="store_true", help="skip the per-layer FLOPs (faster)")
    p.set_defaults(fn=_cmd_summary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxcnn", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: JAXCNN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="name the experiments")
    p.set_defaults(fn=_cmd_list)
    p = sub.add_parser("train", help="train and evaluate an experiment")
    p.add_argument("experiment", help="experiment name (see `jaxcnn list`) or path to its .py file")
    add_flags(p)
    p.set_defaults(fn=_cmd_train)
    _add_launch(sub)
    _add_tools(sub)
    _add_use(sub)
    _add_summary(sub)
    return parser


def _run(argv: list[str]) -> int:
    if argv[:1] == ["convert-weights"]:
        from jaxcnn.weights.keras_h5 import main_convert

        return main_convert(argv[1:])
    if argv[:1] == ["import-keras"]:
        from jaxcnn.weights.keras_model import main_import

        return main_import(argv[1:])
    args = build_parser().parse_args(argv)
    return args.fn(args)


def main(argv=None) -> int:
    """Run one subcommand; errors become one line and an exit status (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = errors.debug_requested(argv)
    result, code = errors.guard(lambda: _run(errors.strip_debug(argv)), debug=debug)
    return code or (result or 0)


if __name__ == "__main__":
    sys.exit(main())
