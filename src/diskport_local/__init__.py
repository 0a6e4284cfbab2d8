"""The `diskport` CLI and local mode: the whole service on one machine, no AWS account and no Docker.

Local mode (`server.py`, `diskport serve`) runs the stack `template.yaml` declares on the AWS emulator,
`diskport_emulator`, which it reaches only through that package's interface; what is here is the service's
own: the commands, the API client, export, the OpenAPI document and API page, and the shutdown.
"""
