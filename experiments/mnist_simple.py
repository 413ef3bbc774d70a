"""N3, tutorial B: the one-conv CNN (C32 P F D100 -> 10), sparse categorical CE, Adam.

    jaxcnn train mnist_simple            # or: python -m experiments.mnist_simple
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="mnist_simple",
        description="N3 one-conv MNIST CNN, Adam, 5 epochs, batch 32 (tutorial B)",
        model="mnist_simple",
        dataset="mnist",
        optimizer="adam",
        epochs=5,
        batch_size=32,
    )


if __name__ == "__main__":
    main(get_config())
