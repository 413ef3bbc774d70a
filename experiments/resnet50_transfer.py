"""ResNet50 transfer learning, tutorial A's exercise: the same recipe as vgg16_transfer with a
pretrained ResNet50 base (Keras names and BatchNorm statistics), to compare with VGG16.

    jaxcnn convert-weights resnet50 resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 weights/resnet50_notop
    jaxcnn train resnet50_transfer --weights weights/resnet50_notop [--variant a|c]

Variant a: Flatten D256 Do.5 -> 10; c: global average pool D1024 -> 10; the base frozen, Adam,
then conv5 unfrozen and fine-tuned at 1e-5. Without --weights the base is randomly initialized
(a warning says so).
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="resnet50_transfer",
        description="ResNet50 base frozen + new head (--variant a|c), CIFAR-10 JPEG copy at 224x224",
        model="resnet50_transfer_a",
        model_kwargs={"preprocess": "caffe_unit"},
        dataset="cifar10",
        loss="categorical_crossentropy",
        optimizer="adam",
        epochs=5,
        batch_size=32,
        train_limit=3200,
        test_limit=1600,
        resize=(224, 224),
        trainable=("head",),
        finetune={"trainable": ("head", "base/conv5"), "learning_rate": 1e-5, "epochs": 2},
        variants={"a": {}, "c": {"model": "resnet50_transfer_c"}},
    )


if __name__ == "__main__":
    main(get_config())
