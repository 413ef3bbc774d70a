"""`jaxcnn predict`, `jaxcnn export` and `jaxcnn evaluate`: using a trained run's folder.

Any run folder: an experiment's, or one that a user's Trainer wrote (`trainer.save(WORKDIR)`,
`fit(..., workdir=WORKDIR)`), whose model card names the module to rebuild (jaxcnn.model_card).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np

from jaxcnn import export, report
from jaxcnn.config.checks import checkpoint_choice, non_negative_int, positive_int
from jaxcnn.data import load_dataset
from jaxcnn.data.image_folder import resize_images
from jaxcnn.errors import UsageError
from jaxcnn.parallel import setup
from jaxcnn.predict import load_predictor, load_test_split, unusable_files, write_csv
from jaxcnn.run import RunFolder


def _checkpoint_arg(p) -> None:
    p.add_argument("--checkpoint", type=checkpoint_choice, default="auto", metavar="WHICH",
                   help="weights: auto (final, else latest checkpoint), final, best, latest, or a step number")


def _cmd_predict(args) -> int:
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
    export.require(args.format)  # before loading anything: a missing runtime is named at once
    export.require_quantize(args.format, args.quantize)
    predictor = load_predictor(args.workdir, checkpoint=args.checkpoint)
    path = args.out or RunFolder(args.workdir).export_path(_default_name(args.format, args.quantize))
    if args.quantize:
        representative = None
        if args.quantize == "int8":  # activation ranges calibrated on the run's own training images
            representative = load_train_sample(predictor.card, data_dir=args.data_dir, limit=args.calibration)
        export.export(predictor, args.format, path, quantize=args.quantize, representative=representative)
    else:
        export.export(predictor, args.format, path)
    if args.check and args.quantize:
        images, labels = load_test_split(predictor.card, data_dir=args.data_dir, limit=args.check)
        r = export.check_quantized(predictor, args.format, path, images, labels)
        print(f"{path}: checked in its runtime on {r['images']} test images: predicted class agrees with "
              f"jaxcnn's on {r['agreement']:.4f}; accuracy {r['accuracy']:.4f} (float {r['float_accuracy']:.4f})",
              file=sys.stderr)
    elif args.check:
        images, _ = load_test_split(predictor.card, data_dir=args.data_dir, limit=args.check)
        err = export.check_export(predictor, args.format, path, images)
        print(f"{path}: checked in its runtime on {len(images)} test images: relative error {err:.2g} "
              f"(allowed {export.TOLERANCE[args.format]:g})", file=sys.stderr)
    print(path)
    return 0


def _default_name(fmt: str, quantize: str | None) -> str:
    name = export.DEFAULT_NAMES[fmt]
    if not quantize:
        return name
    stem, ext = os.path.splitext(name)
    return f"{stem}_{quantize}{ext}"  # model_int8.tflite: beside the float export, not over it


def load_train_sample(card, data_dir=None, limit: int = 200):
    """`limit` training images spread over the classes, resized as the model takes them."""
    ds = load_dataset(card.dataset, data_dir=data_dir).take(limit, 1)
    x = ds.x_train
    if x.ndim == 4 and tuple(x.shape[1:3]) != tuple(card.input_shape[:2]):
        x = resize_images(x, card.input_shape[:2])
    return x


def _cmd_evaluate(args) -> int:
    setup(fake_devices=args.fake_devices)
    predictor = load_predictor(args.workdir, checkpoint=args.checkpoint, batch_size=args.batch_size)
    card = predictor.card
    if args.dataset:
        card = dataclasses.replace(card, dataset=args.dataset)
    if not card.dataset:
        raise UsageError(f"{args.workdir}: the run records no dataset to test on; pass --dataset NAME "
                         "(or save it with trainer.save(WORKDIR, dataset=NAME))")
    x, y = load_test_split(card, data_dir=args.data_dir, limit=args.limit)
    probs = predictor.predict(x)
    metrics = report.write_report(args.workdir, probs, y, x, card.class_names, title=card.experiment or card.model)
    true = np.clip(probs[np.arange(len(y)), np.asarray(y, np.int64).reshape(-1)], 1e-12, 1.0)
    metrics["report_loss"] = float(-np.mean(np.log(true.astype(np.float64))))  # cross-entropy of the outputs
    RunFolder(args.workdir).update_metrics({**metrics, "report_checkpoint": args.checkpoint,
                                            "report_weights": predictor.source})
    print(f"{args.workdir}: accuracy {metrics['report_accuracy']:.4f}, loss {metrics['report_loss']:.4f} on "
          f"{metrics['report_examples']} test examples; per-class metrics in metrics.json, confusion.png, errors.png")
    return 0


def add_parsers(sub) -> None:
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

    p = sub.add_parser("export", help="export a trained run: SavedModel, TFLite, ONNX or Keras",
                       description="Write the run's model (raw pixels in, probabilities out, any batch "
                                   "size) and check it in its own runtime on the run's test images.")
    p.add_argument("workdir", help="the run's folder")
    p.add_argument("--format", required=True, choices=export.FORMATS)
    p.add_argument("--out", help="output path (default: WORKDIR/export/savedmodel|model.tflite|model.onnx|model.keras; "
                                 "model_int8.tflite ... when quantized)")
    p.add_argument("--check", type=non_negative_int, default=64, metavar="N",
                   help="compare with jaxcnn on the first N test images (default 64; 0: no check)")
    p.add_argument("--data-dir", help="folder holding the datasets (default: $JAXCNN_DATA_DIR)")
    p.add_argument("--quantize", choices=export.QUANTIZE,
                   help="post-training quantization (tflite, onnx): int8 (full integer, calibrated on the "
                        "run's training images) or dynamic (int8 weights); checked by predicted-class "
                        "agreement and accuracy on the test images")
    p.add_argument("--calibration", type=positive_int, default=200, metavar="N",
                   help="training images that calibrate --quantize int8 (default 200)")
    _checkpoint_arg(p)
    p.set_defaults(fn=_cmd_export)

    p = sub.add_parser("evaluate", help="evaluation report: per-class metrics, confusion.png, errors.png",
                       description="Evaluate a trained run on its dataset's test split; writes per-class "
                                   "precision/recall/accuracy and the confusion matrix into metrics.json, "
                                   "confusion.png and errors.png.")
    p.add_argument("workdir", help="the run's folder")
    p.add_argument("--data-dir", help="folder holding the datasets (default: $JAXCNN_DATA_DIR)")
    p.add_argument("--dataset", metavar="NAME", help="the dataset whose test split to use (default: the run's)")
    p.add_argument("--limit", type=positive_int, help="only N test examples, spread over the classes")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--fake-devices", type=positive_int, metavar="K", help="run on K fake CPU devices")
    _checkpoint_arg(p)
    p.set_defaults(fn=_cmd_evaluate)
