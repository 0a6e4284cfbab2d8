"""The service's rules: the IMS request, starting an import, the upload convention, an image's life after import."""
