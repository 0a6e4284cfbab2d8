"""diskport: IMS-compatible data disk image import, serverless on AWS."""

__version__ = "0.1.0"
