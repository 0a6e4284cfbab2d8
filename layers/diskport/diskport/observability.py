"""The one logger, tracer and metrics of the service (Powertools), shared by every function."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="diskport")
tracer = Tracer(service="diskport")
metrics = Metrics(namespace="diskport", service="diskport")
