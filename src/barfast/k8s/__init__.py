"""Kubernetes: the manifests of one distributed run (manifests.py) and `barfast k8s render`
(render.py). docs/kubernetes.md is the user's guide."""
