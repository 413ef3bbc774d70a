"""N7, tutorial B: the BatchNorm + dropout CNN, binary CE, Adam, batch 32, augmentation B, 50 epochs; cat vs dog from the CIFAR-10 JPEG copy resized to 150x150.

    jaxcnn train bn_cnn_binary            # or: python -m experiments.bn_cnn_binary
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="bn_cnn_binary",
        description="N7 BN + dropout CNN, cat vs dog 150x150, augmentation B, 50 epochs, batch 32 (tutorial B)",
        model="bn_cnn_binary",
        dataset="cifar10",
        dataset_kwargs={"classes": ("cat", "dog"), "image_size": (150, 150)},
        loss="binary_crossentropy",
        optimizer="adam",
        epochs=50,
        batch_size=32,
        augment="B",
    )


if __name__ == "__main__":
    main(get_config())
