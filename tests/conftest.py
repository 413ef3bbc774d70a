"""Shared test set-up: the datasets folder, and the two tiers.

Real datasets come from $JAXCNN_DATA_DIR, by default the `shared/datasets` folder beside the
checkout (where CI puts it). Multi-device tests start their own processes with fake CPU
devices, so this process keeps the real device count. Helpers shared by several files live in
`tests/helpers.py` (import `tests.helpers`).

Tiers: `pytest` runs the fast tier (every feature at least once, at most 5 minutes on a 2-core
CPU); `pytest -m slow` the rest, listed in SLOW below by node id (a test, or some cases of a
parametrized one) with why each is there; `pytest -m ""` runs both. CI (.ci/run) runs both.
"""

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAXCNN_DATA_DIR", os.path.join(os.path.dirname(_REPO), "shared", "datasets"))

import pytest  # noqa: E402

# Node-id patterns of the slow tier. The fast tier keeps a case of each: the same check on
# fewer networks, formats or processes.
SLOW = [
    # the kit's 8-device checks (one worker: 3 minutes with every registered model); the fast tier
    # runs assert_same_on_devices on a user's model through the fake_devices fixture
    r"test_testing\.py::test_model_same_on_8_devices\[",
    r"test_testing\.py::test_(batchnorm_synchronized_under_pmap|unsynchronized_batchnorm_fails_under_pmap"
    r"|pmap_refuses_a_model_with_dropout)",
    # large networks (VGG16, ResNet50 and their transfer models, airbench) and further small ones
    r"test_testing\.py::test_model_trains\[(?!mnist_cnn\]|bn_cnn_binary|cnn_lstm|mnist_fast)",
    r"test_transfer\.py::test_resnet50_base_keeps_running_stats",
    r"test_transfer\.py::test_head_on_extracted_features_matches_full_model",
    r"test_transfer\.py::test_binary_head_b_and_freeze_mask_prefixes",
    # VGG16 and ResNet50 built in Keras in every weight format (the fast tier converts the small
    # networks' files, tests/test_keras_import.py)
    r"test_vgg_resnet\.py::test_(?!preprocess_input)",
    r"test_transfer\.py::test_(optimizer_without_params_and_preprocess_option|unfreezing_block5_moves)",
    r"test_keras_import\.py::test_(resnet50_base_nested_in_a_functional_model|vgg16_top_at_another_input_size"
    r"|batchnorm_training_mode_matches_keras)",
    r"test_models\.py::test_dropout_only_in_training\[bn_cnn_binary",
    r"test_keras_pretrained\.py::",
    # Keras parity of the remaining seed networks (the fast tier: mnist_cnn, bn_cnn_binary, cnn_lstm)
    r"test_keras_import\.py::test_from_keras_equals_keras_in_every_format\[(?!mnist_cnn\]|bn_cnn_binary|cnn_lstm)",
    r"test_models\.py::test_inference_matches_keras_with_copied_weights\[(?!mnist_cnn-|bn_cnn_binary|cnn_lstm)",
    r"test_keras_package\.py::test_every_entry_point_imports_first\[(?!jaxcnn\.keras\])",
    r"test_layers\.py::test_im2col_conv_equals_xla_values_and_gradients\[x_shape[1-9]",
    # every experiment end to end (the fast tier: N1, N1 with augmentation, the speedrun)
    r"test_experiments_smoke\.py::test_experiment_smoke\[(?!mnist_cnn\]|mnist_cnn_augmented|mnist_fast)",
    r"test_experiments_smoke\.py::test_transfer_variant_finetunes_block5_only",
    r"test_speedrun\.py::test_train_tiny\[airbench",
    r"test_speedrun\.py::test_(param_groups|optimizer_matches_pytorch_sgd)",
    # more kills and damage of checkpoints (the fast tier: SIGKILL + bitwise resume, a corrupt
    # newest checkpoint; tests/test_stopping.py: Ctrl-C saves, raises and resumes bitwise)
    r"test_checkpoint\.py::test_sigterm_mid_epoch_saves_and_resume_loses_no_steps",
    r"test_checkpoint\.py::test_sigkill_in_second_epoch_then_resume_is_bitwise_equal\[tf\]",
    r"test_checkpoint\.py::test_streamed_from_records_killed_mid_epoch",
    r"test_checkpoint\.py::test_every_single_bit_flip",
    r"test_checkpoint\.py::test_sigkill_during_a_save",
    r"test_checkpoint\.py::test_disk_full_during_a_save",
    r"test_checkpoint\.py::test_corrupt_newest_checkpoint_falls_back_to_the_previous\[truncate\]",
    r"test_checkpoint\.py::test_experiment_rerun_resumes_in_the_same_workdir",
    r"test_checkpoint\.py::test_permission_denied_is_an_error_naming_the_file_not_corruption",
    # devices and processes (the fast tier: two processes against four devices, pmap vs jit)
    r"test_parallel\.py::test_(step_on_8_devices_equals_1_device|literal_jax_pmap_runs_the_same_step"
    r"|pmap_rng_per_device_masks|batch_size_not_divisible_by_devices)",  # one 8-device worker
    r"test_parallel\.py::test_two_processes_stream_disjoint_records",
    r"test_launch\.py::test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period\[",
    # real archives decoded whole, every module imported alone, piped CLI output, the cache switch
    r"test_image_folder\.py::test_real_cifar10_archive",
    r"test_records\.py::test_cifar10_archive_through_the_command",
    r"test_idx_and_sources\.py::test_each_data_module_imports_alone",
    r"test_callbacks\.py::test_piped_output_is_one_line_per_epoch",
    r"test_ondevice\.py::test_compilation_cache_dir_and_off_switch",
    # entry points run again in fresh interpreters (the fast tier checks them in-process)
    r"test_experiment_cli\.py::test_python_dash_m_(experiment|reports_errors_in_one_line)",
    r"test_predict_export\.py::test_(use_commands_report_a_workdir_without_a_run_in_one_line"
    r"|an_unusable_image_is_one_line_naming_the_file|symbolic_batch_traces_through_im2col)",
    # the GPU benchmark's CPU smoke runs (benchmark tooling, not the library)
    r"test_gpu_bench_smoke\.py::",
]
_SLOW = re.compile("|".join(f"(?:{p})" for p in SLOW))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _SLOW.search(item.nodeid):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def data_dir():
    path = os.environ["JAXCNN_DATA_DIR"]
    if not os.path.isdir(path):
        pytest.fail(f"datasets folder {path} not found: set JAXCNN_DATA_DIR")
    return path
