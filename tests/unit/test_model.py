import hashlib

import numpy as np
import pytest
import torch

from serve_app.config import DEFAULT_MODEL_ID
from serve_app.model import (
    SIMULATED_GPUS_ENV,
    CudaUnavailableError,
    MnistCNN,
    count_parameters,
    gpus_simulated,
    load_model,
    model_dir,
    predict,
    select_device,
)
from serve_app.store import ModelStore
from serve_app.transforms import to_model_input

ARTEFACTS = ("model.pt", "model.pt2")


@pytest.fixture(scope="module")
def card():
    return ModelStore().card(DEFAULT_MODEL_ID)


def test_card_digests_match_the_committed_artefacts(card):
    for name in ARTEFACTS:
        digest = hashlib.sha256((model_dir(DEFAULT_MODEL_ID) / name).read_bytes()).hexdigest()
        assert digest == card["sha256"][name]


def test_card_reports_the_target_accuracy_and_parameter_count(card):
    assert card["test_accuracy"] >= 0.99
    assert card["test_images"] == 10000
    assert card["train_images"] == 60000
    assert card["parameters"] == count_parameters(MnistCNN())


@pytest.mark.parametrize("artefact", ARTEFACTS)
def test_artefact_classifies_the_shipped_digits(artefact, example_digits):
    images, labels = example_digits
    model = load_model(model_dir(DEFAULT_MODEL_ID) / artefact)
    result = predict(model, to_model_input(images[:, None]))
    np.testing.assert_array_equal(result.labels, labels)
    assert result.probabilities.shape == (10, 10)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_torchscript_and_export_formats_agree(mnist_test):
    inputs = to_model_input(mnist_test.images[:500, None])
    scripted = predict(load_model(model_dir(DEFAULT_MODEL_ID) / "model.pt"), inputs)
    exported = predict(load_model(model_dir(DEFAULT_MODEL_ID) / "model.pt2"), inputs)
    np.testing.assert_array_equal(scripted.labels, exported.labels)
    np.testing.assert_allclose(scripted.probabilities, exported.probabilities, atol=1e-5)


def test_batch_of_one_and_large_batches_work():
    model = load_model(model_dir(DEFAULT_MODEL_ID) / "model.pt")
    for n in (1, 257):
        assert predict(model, torch.zeros(n, 1, 28, 28)).labels.shape == (n,)


@pytest.mark.parametrize("max_images_per_call", [1, 7, 128, 500])
def test_split_model_calls_give_the_same_answer(mnist_test, max_images_per_call):
    model = load_model(model_dir(DEFAULT_MODEL_ID) / "model.pt")
    inputs = to_model_input(mnist_test.images[:300, None])
    whole = predict(model, inputs)
    split = predict(model, inputs, max_images_per_call)
    np.testing.assert_array_equal(split.labels, whole.labels)
    np.testing.assert_allclose(split.probabilities, whole.probabilities, atol=1e-5)


def test_split_model_calls_call_the_model_per_chunk():
    sizes: list[int] = []

    class Recording(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            sizes.append(images.shape[0])
            return torch.zeros(images.shape[0], 10)

    assert predict(Recording(), torch.zeros(300, 1, 28, 28), 128).labels.shape == (300,)
    assert sizes == [128, 128, 44]


def test_split_size_below_one_is_refused():
    model = load_model(model_dir(DEFAULT_MODEL_ID) / "model.pt")
    with pytest.raises(ValueError, match="max_images_per_call must be >= 1"):
        predict(model, torch.zeros(2, 1, 28, 28), 0)


def test_missing_artefact_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model artefact not found"):
        load_model(tmp_path / "model.pt")


@pytest.mark.parametrize(
    ("gpu_ids", "cuda", "simulated", "expected"),
    [
        ([], False, False, "cpu"),
        ([], True, False, "cpu"),
        ([0], True, False, "cuda"),
        (["1"], True, False, "cuda"),
        ([0], False, True, "cpu"),  # the chart's simulateGpus: a "GPU" group without GPUs
        ([0], True, True, "cuda"),  # a real GPU is used even where simulation is allowed
    ],
)
def test_device_follows_the_replicas_gpu_share(gpu_ids, cuda, simulated, expected):
    assert select_device(gpu_ids, cuda, simulated).type == expected


def test_a_gpu_share_without_cuda_refuses_to_start_with_what_to_check():
    with pytest.raises(CudaUnavailableError) as raised:
        select_device([0], cuda_available=False)
    message = str(raised.value)
    assert "GPU [0]" in message and "CUDA is unavailable" in message
    assert "runtimeClassName" in message and "simulateGpus" in message and SIMULATED_GPUS_ENV in message


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False), (None, False)])
def test_simulated_gpus_are_declared_by_the_environment(value, expected):
    environ = {} if value is None else {SIMULATED_GPUS_ENV: value}
    assert gpus_simulated(environ) is expected
