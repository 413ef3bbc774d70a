"""The argument parsing of `jaxcnn convert-weights` and `jaxcnn import-keras`: thin `main_*`
functions over `jaxcnn.keras.convert` and `jaxcnn.keras.model` (the CLI calls them)."""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from jaxcnn.config_flags import positive_int
from jaxcnn.keras.convert import ARCHS, convert_keras_h5, download_keras_weights, target_layers
from jaxcnn.keras.model import import_keras
from jaxcnn.models import list_models

def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 32,32,3), got {text!r}") from None


def main_convert(argv=None) -> int:
    """`jaxcnn convert-weights MODEL IN.h5 OUT_DIR` (or `ARCH --download OUT_DIR`)."""
    ap = argparse.ArgumentParser(
        prog="jaxcnn convert-weights",
        description="Load a Keras weight file (tf_keras .h5, Keras 3 .weights.h5 or .keras) into a "
                    "registered jaxcnn model and save its variables as an Orbax checkpoint. Layers "
                    "match by name, else by order within each type; every shape is checked.")
    ap.add_argument("arch", metavar="MODEL", help=f"a registered model: {', '.join(list_models())}")
    ap.add_argument("paths", nargs="+", metavar="IN.h5 OUT_DIR",
                    help="input file and output directory (only OUT_DIR with --download)")
    top = ap.add_mutually_exclusive_group()
    top.add_argument("--include-top", dest="include_top", action="store_true", default=None,
                     help="vgg16/resnet50: require and convert the classifier layers")
    top.add_argument("--no-top", dest="include_top", action="store_false",
                     help="vgg16/resnet50: convert the conv base only")
    ap.add_argument("--input-shape", type=_shape, metavar="H,W,C",
                    help="input the file's model was built for (default: the network's tutorial "
                         "input; 224,224,3 for VGG16/ResNet50 models)")
    ap.add_argument("--num-classes", type=positive_int, help="default: the file's last layer's width")
    ap.add_argument("--download", action="store_true",
                    help="vgg16/resnet50: fetch the published ImageNet weights with keras.utils.get_file first")
    args = ap.parse_args(argv)
    if args.arch not in list_models():
        ap.error(f"unknown model {args.arch!r}; known: {', '.join(list_models())}")
    if args.download:
        if len(args.paths) != 1:
            ap.error("with --download give only OUT_DIR")
        if args.arch not in ARCHS:
            ap.error(f"--download is for {', '.join(ARCHS)}")
        in_path = download_keras_weights(args.arch, args.include_top is not False)
        out_dir = args.paths[0]
    else:
        if len(args.paths) != 2:
            ap.error("give IN.h5 and OUT_DIR")
        in_path, out_dir = args.paths
    # A WeightConversionError or a missing file goes to the command line's one-line report (exit 2).
    variables = convert_keras_h5(args.arch, in_path, out_dir, args.include_top, args.input_shape,
                                 args.num_classes)
    n = sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(variables))
    print(f"{args.arch}: {len(target_layers(variables))} layers, {n:,} values from {in_path} -> {out_dir}")
    return 0


def main_import(argv=None) -> int:
    """`jaxcnn import-keras FILE OUT_DIR`: a whole Keras model as a jaxcnn weights folder."""
    ap = argparse.ArgumentParser(
        prog="jaxcnn import-keras",
        description="Import a whole Keras model (Keras 3 .keras, or a tf_keras/Keras 2 full-model "
                    ".h5) as a Flax module built from its config plus its variables; load it back "
                    "with jaxcnn.keras.load_imported(OUT_DIR).")
    ap.add_argument("file", help="the Keras model file")
    ap.add_argument("out_dir", help="output folder (Orbax variables + meta.json with the model spec)")
    ap.add_argument("--keep-output-activation", action="store_true",
                    help="keep a final softmax/sigmoid (default: drop it, return logits as jaxcnn models do)")
    args = ap.parse_args(argv)
    # A WeightConversionError or a missing file goes to the command line's one-line report (exit 2).
    model, variables = import_keras(args.file, args.out_dir, logits=not args.keep_output_activation)
    spec = json.loads(model.spec)
    n = sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(variables))
    dropped = [a for a in spec["output_activations"] if a != "linear"]
    print(f"{spec['name']}: {len(spec['layers'])} layers, {n:,} values from {args.file} -> {args.out_dir}"
          + (f" (output {', '.join(dropped)} dropped: the module returns logits)" if dropped else ""))
    return 0
