"""VGG16 transfer learning, N10-N12 (tutorials A-C): the pretrained conv base frozen, a new head trained.

    jaxcnn convert-weights vgg16 vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 weights/vgg16_notop
    jaxcnn train vgg16_transfer --weights weights/vgg16_notop [--variant a|b|c]

Variants: a (N10, tutorial A): Flatten D256 Do.5 -> 10 on CIFAR-10; b (N11, tutorial B):
Flatten D256 Do.5 -> 1 on cat vs dog, RMSprop 2e-5, 100 steps of 32 per epoch, 5 epochs, 50
validation steps, then block5 unfrozen and fine-tuned at 1e-5; c (N12, tutorial C): global
average pool D1024 -> 10, Adam. Images: the CIFAR-10 JPEG copy resized to 224x224. Without
--weights the base is randomly initialized (a warning says so): the recipe runs, but measures no
transfer. No pretrained file ships with jaxcnn; `jaxcnn convert-weights vgg16 --download --no-top
DIR` fetches and converts Keras' on a machine with internet.
"""

from jaxcnn.experiment import ExperimentConfig, main

_HEAD_B = dict(
    model="vgg16_transfer_b", dataset_kwargs={"classes": ("cat", "dog")}, loss="binary_crossentropy",
    optimizer="rmsprop", learning_rate=2e-5,
    finetune={"trainable": ("head", "base/block5"), "learning_rate": 1e-5, "epochs": 2},
)


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="vgg16_transfer",
        description="N10-N12 VGG16 base frozen + new head (--variant a|b|c), CIFAR-10 JPEG copy at 224x224",
        model="vgg16_transfer_a",
        model_kwargs={"preprocess": "caffe_unit"},
        dataset="cifar10",
        loss="categorical_crossentropy",
        optimizer="adam",
        epochs=5,
        batch_size=32,
        # Tutorial B's generator: 100 steps of 32 per epoch, 50 validation steps.
        train_limit=3200,
        test_limit=1600,
        resize=(224, 224),
        trainable=("head",),
        variants={"a": {}, "b": _HEAD_B, "c": {"model": "vgg16_transfer_c"}},
    )


if __name__ == "__main__":
    main(get_config())
