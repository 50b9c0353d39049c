"""Real test digits shipped for the README, curl and the tests.

``examples/digits/`` holds, from the real MNIST test set:

* ``digit-<label>.png``  -- the first test image of each class 0-9 (28x28 greyscale PNG);
* ``digit.json``         -- ``{"image": [<28x28 uint8>]}``: one digit, ready for curl;
* ``digits-10.json``     -- the ten digits above in one batch;
* ``digit-oip.json``     -- the 7 as an Open Inference Protocol request (a UINT8 [1, 28, 28] tensor);
* ``labels.json``        -- test-set index and true label of each shipped digit.

    python -m serve_app.training.examples     # regenerate (a test checks the files match)
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from serve_app.config import REPO_ROOT
from serve_app.training.data import MnistSplit, load_split

EXAMPLES_DIR = REPO_ROOT / "examples" / "digits"


def first_of_each_class(split: MnistSplit) -> list[int]:
    """Index of the first image of each digit 0-9."""
    return [int(np.flatnonzero(split.labels == digit)[0]) for digit in range(10)]


def png_bytes(pixels: np.ndarray) -> bytes:
    """A 28x28 uint8 array as PNG bytes (deterministic: no metadata)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def example_files(split: MnistSplit) -> dict[str, bytes]:
    """File name -> content for every shipped example."""
    indices = first_of_each_class(split)
    files = {f"digit-{digit}.png": png_bytes(split.images[index]) for digit, index in enumerate(indices)}
    files["digit.json"] = json.dumps({"image": [split.images[indices[7]].tolist()]}).encode() + b"\n"
    files["digits-10.json"] = json.dumps({"image": [split.images[i].tolist() for i in indices]}).encode() + b"\n"
    seven = {
        "name": "image",
        "datatype": "UINT8",
        "shape": [1, 28, 28],
        "data": split.images[indices[7]].ravel().tolist(),
    }
    files["digit-oip.json"] = json.dumps({"inputs": [seven]}).encode() + b"\n"
    labels = [
        {"file": f"digit-{digit}.png", "test_index": index, "label": digit} for digit, index in enumerate(indices)
    ]
    files["labels.json"] = json.dumps(labels, indent=2).encode() + b"\n"
    return files


def load_examples(directory: Path = EXAMPLES_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The ten shipped digits as uint8 (10, 28, 28) and their labels (10,)."""
    batch = json.loads((directory / "digits-10.json").read_text())
    labels = [entry["label"] for entry in json.loads((directory / "labels.json").read_text())]
    return np.asarray(batch["image"], dtype=np.uint8), np.asarray(labels)


def main() -> None:
    """Write the examples from the real test set."""
    EXAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for name, content in example_files(load_split("test")).items():
        (EXAMPLES_DIR / name).write_bytes(content)
    print(f"wrote {EXAMPLES_DIR}")


if __name__ == "__main__":
    main()
