"""N6 on the Free Spoken Digit Dataset: 64x64 log-mel spectrograms (tf.signal), C32 P C64 P F D64 -> 10, Adam; the dataset's official split (index 0-4 test).

    jaxcnn train spoken_digits_cnn            # or: python -m experiments.spoken_digits_cnn
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="spoken_digits_cnn",
        description="N6 spectrogram CNN on spoken digits (FSDD), Adam, 20 epochs, batch 32",
        model="spectrogram_cnn",
        dataset="spoken_digits",
        loss="categorical_crossentropy",
        optimizer="adam",
        epochs=20,
        batch_size=32,
        reported={"note": "training left as a placeholder in tutorial B (classes music/speech/silence)"},
    )


if __name__ == "__main__":
    main(get_config())
