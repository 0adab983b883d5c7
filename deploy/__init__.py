"""Deployment: container images (docker/), Kubernetes manifests (k8s/), and the schema wait of the service pods."""
