import numpy as np
import torch
from torchvision import transforms as v1

from serve_app.transforms import to_model_input


def test_uint8_batch_matches_the_tutorials_per_image_pipeline(example_digits):
    images, _ = example_digits
    tutorial = v1.Compose([v1.ToTensor(), v1.Normalize((0.5,), (0.5,))])
    expected = torch.stack([tutorial(image) for image in images])
    actual = to_model_input(images[:, None])
    assert actual.shape == (10, 1, 28, 28)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected)


def test_unit_floats_and_uint8_give_the_same_model_input(example_digits):
    images, _ = example_digits
    from_uint8 = to_model_input(images[:, None])
    from_unit = to_model_input(images[:, None].astype(np.float64) / 255.0)
    torch.testing.assert_close(from_unit, from_uint8)
    assert float(from_uint8.min()) == -1.0
    assert float(from_uint8.max()) == 1.0


def test_read_only_arrays_are_accepted(example_digits):
    images, _ = example_digits
    frozen = images[:, None].copy()
    frozen.setflags(write=False)
    assert to_model_input(frozen).shape == (10, 1, 28, 28)
