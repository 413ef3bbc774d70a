"""N4, tutorial B: the three-conv MNIST CNN (C32 P C64 P C64 F D64 -> 10), one-hot categorical CE, Adam, 5 epochs, batch 64.

    jaxcnn train mnist_cnn3            # or: python -m experiments.mnist_cnn3
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="mnist_cnn3",
        description="N4 three-conv MNIST CNN, categorical CE, 5 epochs, batch 64 (tutorial B)",
        model="mnist_cnn3",
        dataset="mnist",
        loss="categorical_crossentropy",
        optimizer="adam",
        epochs=5,
        batch_size=64,
    )


if __name__ == "__main__":
    main(get_config())
