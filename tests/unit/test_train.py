import torch

from serve_app.training.train import TrainConfig, random_shift, train


def test_random_shift_keeps_shape_and_moves_pixels_within_bounds():
    generator = torch.Generator().manual_seed(0)
    batch = torch.full((64, 1, 28, 28), -1.0)
    batch[:, :, 14, 14] = 1.0  # one bright pixel in the middle
    shifted = random_shift(batch, generator)
    assert shifted.shape == batch.shape
    positions = (shifted[:, 0] == 1.0).nonzero()[:, 1:]
    assert len(positions) == 64  # the pixel survives in every image
    assert int((positions - 14).abs().max()) <= 2
    assert len({tuple(p.tolist()) for p in positions}) > 1  # offsets differ per image


def test_training_is_deterministic_for_a_seed():
    config = TrainConfig(epochs=1, train_limit=1024, batch_size=128, seed=3)
    first, first_metrics = train(config)
    second, second_metrics = train(config)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert first_metrics["test_accuracy"] == second_metrics["test_accuracy"]
    third, _ = train(TrainConfig(epochs=1, train_limit=1024, batch_size=128, seed=4))
    assert not torch.equal(first.state_dict()["head.1.weight"], third.state_dict()["head.1.weight"])
