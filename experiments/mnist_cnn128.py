"""N8, tutorial C: MNIST CNN with dense 128, categorical CE, Adam, 10 epochs, batch 128, the last 10% of train held out; also writes filters.png (first conv layer's filters).

    jaxcnn train mnist_cnn128            # or: python -m experiments.mnist_cnn128
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="mnist_cnn128",
        description="N8 MNIST CNN dense 128, 10 epochs, batch 128, validation_split 0.1 (tutorial C)",
        model="mnist_cnn128",
        dataset="mnist",
        loss="categorical_crossentropy",
        optimizer="adam",
        epochs=10,
        batch_size=128,
        validation_split=0.1,
        extras=("filters",),
        reported={"test_accuracy": "over 0.98"},
    )


if __name__ == "__main__":
    main(get_config())
