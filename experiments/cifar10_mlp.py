"""N9, tutorial D: the CIFAR-10 MLP (3072 -> D512 D512 -> 10), categorical CE, Keras' default optimizer (RMSprop), 20 epochs, batch 32, validated on the test set; also writes samples.png. Data: the CIFAR-10 JPEG copy.

    jaxcnn train cifar10_mlp            # or: python -m experiments.cifar10_mlp
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="cifar10_mlp",
        description="N9 CIFAR-10 MLP, RMSprop, 20 epochs, batch 32 (tutorial D)",
        model="cifar10_mlp",
        dataset="cifar10",
        loss="categorical_crossentropy",
        optimizer="rmsprop",
        epochs=20,
        batch_size=32,
        extras=("samples",),
        reported={"epoch1_accuracy": 0.3122, "epoch1_val_accuracy": 0.3157, "epoch20_accuracy": 0.4705,
                  "epoch20_val_accuracy": 0.4372, "seconds_per_epoch": 46},
    )


if __name__ == "__main__":
    main(get_config())
