"""mnist-serve: an MNIST classifier served by Ray Serve, composed as Ingress -> Preprocessor -> Classifier."""
