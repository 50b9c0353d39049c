import numpy as np

from serve_app.training.examples import EXAMPLES_DIR, example_files


def test_shipped_examples_are_the_real_test_digits(mnist_test):
    for name, content in example_files(mnist_test).items():
        assert (EXAMPLES_DIR / name).read_bytes() == content, name


def test_example_labels_are_one_per_class(example_digits, mnist_test):
    images, labels = example_digits
    assert labels.tolist() == list(range(10))
    for image, label in zip(images, labels, strict=True):
        matches = np.flatnonzero((mnist_test.images == image).all(axis=(1, 2)))
        assert mnist_test.labels[matches[0]] == label
