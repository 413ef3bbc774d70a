"""N1 on augmented MNIST, tutorial A: rotation 10, zoom 0.1, shifts 0.1 (recipe A), 5 epochs, batch 32.

    jaxcnn train mnist_cnn_augmented            # or: python -m experiments.mnist_cnn_augmented
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="mnist_cnn_augmented",
        description="N1 on MNIST with augmentation A, Adam, 5 epochs, batch 32 (tutorial A)",
        model="mnist_cnn",
        dataset="mnist",
        optimizer="adam",
        epochs=5,
        batch_size=32,
        augment="A",
    )


if __name__ == "__main__":
    main(get_config())
