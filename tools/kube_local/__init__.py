"""A real Kubernetes control plane on one machine, from binaries built by ``scripts/kube-build``."""
