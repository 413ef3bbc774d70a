"""N2, tutorial A: the MNIST CNN with dropout (C32 P Do.25 C64 P Do.25 F D64 Do.5 -> 10), Adam, 5 epochs, batch 32.

    jaxcnn train mnist_cnn_dropout            # or: python -m experiments.mnist_cnn_dropout
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="mnist_cnn_dropout",
        description="N2 MNIST CNN + dropout, Adam, 5 epochs, batch 32 (tutorial A)",
        model="mnist_cnn_dropout",
        dataset="mnist",
        optimizer="adam",
        epochs=5,
        batch_size=32,
    )


if __name__ == "__main__":
    main(get_config())
