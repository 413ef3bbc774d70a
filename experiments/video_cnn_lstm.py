"""N5: CNN-LSTM (per-frame C32 P F, LSTM 50 -> 3) on 30-frame moving-digit clips (still / walking / running), beside a frame-only baseline that cannot tell the classes apart. Frames are 32x32 by default; the tutorial's 128x128 via dataset_kwargs.

    jaxcnn train video_cnn_lstm            # or: python -m experiments.video_cnn_lstm
"""

from jaxcnn.experiment import ExperimentConfig, main


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="video_cnn_lstm",
        description="N5 CNN-LSTM on moving-digit clips vs a frame-only baseline, Adam, 10 epochs, batch 32",
        model="cnn_lstm",
        dataset="moving_digits",
        dataset_kwargs={"num_train": 3000, "num_test": 600, "frames": 30, "size": 32},
        loss="categorical_crossentropy",
        optimizer="adam",
        epochs=10,
        batch_size=32,
        extras=("frame_baseline",),
        reported={"note": "training left as a placeholder in tutorial B (actions such as walking / running)"},
    )


if __name__ == "__main__":
    main(get_config())
