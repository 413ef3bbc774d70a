"""CIFAR-10 the airbench94 way in JAX (jaxcnn.speedrun.CIFAR10_FAST): 94% is the published target.

Frozen whitening 2x2 conv, three conv-pool-BN(no scale)-GELU groups (64/256/256), batch 1024,
SGD + Nesterov (lr 11.5 / decay 0.0153 per 1024 summed examples, BN shifts at 64x lr), label
smoothing 0.2, random mirror + 2-px shifts on the device, lookahead weight averaging, 9.9
epochs, test-time mirror + shift averaging. On the JPEG copy of CIFAR-10 (see README).

    jaxcnn train cifar10_fast            # or: python -m experiments.cifar10_fast
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="cifar10_fast",
        description="airbench94-style CIFAR-10: whitening layer, BN without scale, lookahead, TTA",
        model="airbench",
        dataset="cifar10",
        epochs=9.9,
        batch_size=1024,
        speedrun="cifar10_fast",
        checkpoint_best=None,
        reported={"airbench94_test_accuracy": 0.94, "airbench94_seconds_a100": 2.6},
    )


if __name__ == "__main__":
    main(get_config())
