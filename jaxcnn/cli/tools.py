"""`jaxcnn prepare`, `augment-preview`, `summary`, `convert-weights` and `import-keras`: data, model
and weight tools."""

from __future__ import annotations

import json

import jax
import numpy as np

from jaxcnn.config.checks import input_shape, non_negative_int, positive_int
from jaxcnn.data import load_dataset
from jaxcnn.data.augment import save_augment_preview
from jaxcnn.data.image_folder import resize_images
from jaxcnn.data.records import prepare
from jaxcnn.errors import UsageError
from jaxcnn.keras import ARCHS, convert_keras_h5, download_keras_weights, import_keras
from jaxcnn.keras.convert import target_layers
from jaxcnn.keras.options import supported_text
from jaxcnn.models import TUTORIAL_INPUT_SHAPES, get_model, list_models
from jaxcnn.train.summary import model_summary


def _cmd_augment_preview(args) -> int:
    ds = load_dataset(args.dataset, data_dir=args.data_dir)
    images = ds.x_train[: args.count]
    if args.resize:
        images = resize_images(images, args.resize)
    titles = [ds.class_names[int(i)] for i in ds.y_train[: args.count]]
    print(save_augment_preview(images, args.augment, args.out, titles=titles, seed=args.seed))
    return 0


def _cmd_prepare(args) -> int:
    manifest = prepare(args.source, args.out, image_size=args.image_size, color_mode=args.color_mode,
                       on_error=args.on_error, limit=args.limit, shard_size=args.shard_size,
                       data_dir=args.data_dir, progress=not args.quiet)
    counts = ", ".join(f"{s} {v['num_examples']}" for s, v in manifest["splits"].items())
    print(f"{args.out}: {counts} examples of {tuple(manifest['image_shape'])}, "
          f"{len(manifest['class_names'])} classes (train with --data prepared:{args.out})")
    return 0


def _cmd_summary(args) -> int:
    if args.model not in list_models():
        raise UsageError(f"unknown model {args.model!r}; known: {', '.join(list_models())}")
    input_shape = args.input_shape or TUTORIAL_INPUT_SHAPES.get(args.model)
    if input_shape is None:
        raise UsageError(f"give --input-shape for {args.model}")
    print(model_summary(get_model(args.model), input_shape, flops=not args.no_flops))
    return 0


def _count(variables) -> int:
    return sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(variables))


def _cmd_convert_weights(args) -> int:
    if args.arch not in list_models():
        raise UsageError(f"unknown model {args.arch!r}; known: {', '.join(list_models())}")
    if args.download:
        if len(args.paths) != 1:
            raise UsageError("convert-weights --download: give only OUT_DIR")
        if args.arch not in ARCHS:
            raise UsageError(f"convert-weights --download is for {', '.join(ARCHS)}")
        in_path = download_keras_weights(args.arch, args.include_top is not False)
        out_dir = args.paths[0]
    else:
        if len(args.paths) != 2:
            raise UsageError("convert-weights: give IN.h5 and OUT_DIR")
        in_path, out_dir = args.paths
    # A WeightConversionError or a missing file goes to the command line's one-line report (exit 2).
    variables = convert_keras_h5(args.arch, in_path, out_dir, args.include_top, args.input_shape,
                                 args.num_classes)
    print(f"{args.arch}: {len(target_layers(variables))} layers, {_count(variables):,} values from {in_path} -> {out_dir}")
    return 0


def _cmd_import_keras(args) -> int:
    if args.supported:
        print(supported_text())
        return 0
    if args.file is None or args.out_dir is None:
        raise UsageError("import-keras: give FILE and OUT_DIR (or --supported)")
    # A WeightConversionError or a missing file goes to the command line's one-line report (exit 2).
    model, variables = import_keras(args.file, args.out_dir, logits=not args.keep_output_activation,
                                    train_augmentation=args.train_augmentation)
    spec = json.loads(model.spec)
    dropped = [a for a in spec["output_activations"] if a != "linear"]
    print(f"{spec['name']}: {len(spec['layers'])} layers, {_count(variables):,} values from {args.file} -> "
          f"{args.out_dir}" + (f" (output {', '.join(dropped)} dropped: the module returns logits)"
                               if dropped else ""))
    return 0


def add_parsers(sub) -> None:
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

    p = sub.add_parser("summary", help="a model's layers, output shapes, parameters and FLOPs (Keras-style)")
    p.add_argument("model", help="model name (see jaxcnn.models.list_models)")
    p.add_argument("--input-shape", type=input_shape, metavar="H,W,C", help="default: the tutorial's input shape")
    p.add_argument("--no-flops", action="store_true", help="skip the per-layer FLOPs (faster)")
    p.set_defaults(fn=_cmd_summary)

    p = sub.add_parser("convert-weights",
                       help="Keras weights into a registered model -> an Orbax checkpoint of Flax variables",
                       description="Load a Keras weight file (tf_keras .h5, Keras 3 .weights.h5 or .keras) "
                                   "into a registered jaxcnn model and save its variables as an Orbax "
                                   "checkpoint. Layers match by name, else by order within each type; every "
                                   "shape is checked.")
    p.add_argument("arch", metavar="MODEL", help="a registered model (see jaxcnn.models.list_models)")
    p.add_argument("paths", nargs="+", metavar="IN.h5 OUT_DIR",
                   help="input file and output directory (only OUT_DIR with --download)")
    top = p.add_mutually_exclusive_group()
    top.add_argument("--include-top", dest="include_top", action="store_true", default=None,
                     help="vgg16/resnet50: require and convert the classifier layers")
    top.add_argument("--no-top", dest="include_top", action="store_false",
                     help="vgg16/resnet50: convert the conv base only")
    p.add_argument("--input-shape", type=input_shape, metavar="H,W,C",
                   help="input the file's model was built for (default: the network's tutorial "
                        "input; 224,224,3 for VGG16/ResNet50 models)")
    p.add_argument("--num-classes", type=positive_int, help="default: the file's last layer's width")
    p.add_argument("--download", action="store_true",
                   help="vgg16/resnet50: fetch the published ImageNet weights with keras.utils.get_file first")
    p.set_defaults(fn=_cmd_convert_weights)

    p = sub.add_parser("import-keras", help="a whole Keras model (.keras, full .h5) -> a Flax module spec + variables",
                       description="Import a whole Keras model (Keras 3 .keras, or a tf_keras/Keras 2 "
                                   "full-model .h5) as a Flax module built from its config plus its "
                                   "variables; load it back with jaxcnn.keras.load_imported(OUT_DIR).")
    p.add_argument("file", nargs="?", help="the Keras model file")
    p.add_argument("out_dir", nargs="?", help="output folder (Orbax variables + meta.json with the model spec)")
    p.add_argument("--keep-output-activation", action="store_true",
                   help="keep a final softmax/sigmoid (default: drop it, return logits as jaxcnn models do)")
    p.add_argument("--train-augmentation", choices=("refuse", "identity"), default="refuse",
                   help="random augmentation layers (RandomRotation, ...) in training: refuse (an error "
                        "naming the layer; RandomFlip flips) or identity (augment with jaxcnn instead)")
    p.add_argument("--supported", action="store_true", help="list the Keras layers, activations and "
                                                              "regularizers the import carries, and exit")
    p.set_defaults(fn=_cmd_import_keras)
