"""The gRPC contracts (``mnist.proto``, and ``inference.proto``: the Open Inference Protocol) and their stubs.

The ``*_pb2*`` modules are generated: ``python -m serve_app.grpc_api --generate`` rewrites them
from the protos, and a test checks that the committed ones are what the project's grpcio-tools make.
"""
