"""Local mode: the whole diskport service on one machine, no AWS account and no Docker.

Everything here is built from `template.yaml`, so what runs locally is what deploys.
"""
