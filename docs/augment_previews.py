"""Regenerate docs/augment_mnist_A.png and docs/augment_cifar10_catdog_B.png.

    JAXCNN_DATA_DIR=DIR python docs/augment_previews.py

MNIST (bundled) with recipe A; CIFAR-10 (JPEG copy) cats and dogs, upsampled to 150x150 as for
N7, with recipe B. Each row: the original, then augmented copies (seeded, reproducible).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from jaxcnn.data import load_dataset  # noqa: E402
from jaxcnn.data.augment import save_augment_preview  # noqa: E402
from jaxcnn.data.pipeline import import_tf  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
mnist = load_dataset("mnist")
save_augment_preview(mnist.x_train[:5], "A", os.path.join(here, "augment_mnist_A.png"),
                     titles=[str(v) for v in mnist.y_train[:5]])

cifar = load_dataset("cifar10", classes=("cat", "dog"))
pick = np.concatenate([np.nonzero(cifar.y_test == c)[0][:2] for c in (0, 1)])
tf = import_tf()
big = tf.cast(tf.round(tf.image.resize(cifar.x_test[pick], (150, 150))), tf.uint8).numpy()
save_augment_preview(big, "B", os.path.join(here, "augment_cifar10_catdog_B.png"),
                     titles=[cifar.class_names[i] for i in cifar.y_test[pick]], n_augmented=5, dpi=60)
print("wrote", os.listdir(here))
