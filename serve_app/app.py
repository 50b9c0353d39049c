"""The application builder: the one place where the Serve graph is bound.

``charts/mnist-serve/files/serve-config.yaml`` names ``serve_app.app:build_app`` as its ``import_path``;
Serve validates the config's ``args:`` against :class:`~serve_app.config.AppArgs`
and calls this function.
"""

# No `from __future__ import annotations` here: Serve reads the builder's annotation
# at run time to validate the config's `args:` into AppArgs.
from ray.serve import Application, Deployment

from serve_app.classifier import Classifier
from serve_app.config import AppArgs
from serve_app.ingress import Ingress
from serve_app.preprocessor import Preprocessor


def deployment_of(decorated: object) -> Deployment:
    """The :class:`~ray.serve.Deployment` that ``@serve.deployment`` made of a class.

    At run time the decorated name already is that Deployment; to a type checker it is still the
    class (mypy does not apply a class decorator's return type), so this checks and says so.
    """
    if not isinstance(decorated, Deployment):
        raise TypeError(f"{decorated!r} is not a Serve deployment (no @serve.deployment)")
    return decorated


def build_app(args: AppArgs) -> Application:
    """Ingress -> Preprocessor -> Classifier, and the TaskConsumer when ``args.tasks.enabled``.

    ``args`` may also be a plain dict.
    """
    args = AppArgs.model_validate(args) if isinstance(args, dict) else args
    preprocessor = deployment_of(Preprocessor).bind()
    classifier = deployment_of(Classifier).bind(
        model_store=args.model_store, max_models_per_replica=args.max_models_per_replica, preload=(args.model_id,)
    )
    consumer = None
    if args.tasks.enabled:
        from serve_app.consumer import task_consumer_deployment

        consumer = task_consumer_deployment(args.tasks).bind(preprocessor, classifier, args.tasks)
    return deployment_of(Ingress).bind(preprocessor=preprocessor, classifier=classifier, args=args, consumer=consumer)
