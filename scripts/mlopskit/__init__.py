"""Tooling for the mlops-kit repository: image builds, secrets, deploy helpers."""
