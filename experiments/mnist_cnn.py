"""N1, tutorial A: the MNIST CNN (C32 P C64 P F D64 -> 10), Adam, 5 epochs, batch 32.

    jaxcnn train mnist_cnn            # or: python -m experiments.mnist_cnn
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="mnist_cnn",
        description="N1 MNIST CNN, Adam, 5 epochs, batch 32 (tutorial A)",
        model="mnist_cnn",
        dataset="mnist",
        loss="sparse_categorical_crossentropy",
        optimizer="adam",
        epochs=5,
        batch_size=32,
        reported={"epoch1_loss": 0.1556, "epoch1_accuracy": 0.9532, "seconds_per_epoch": 5,
                  "test_loss": 0.0492, "test_accuracy": 0.9845},
    )


if __name__ == "__main__":
    main(get_config())
