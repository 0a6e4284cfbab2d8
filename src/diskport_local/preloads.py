"""What local mode's fork servers import once for every function instance, of the service's own modules.

A module of its own, so that reading the list imports nothing else (the test of the list imports it before the
modules it names, to record what they read).
"""

# The service's modules every function instance shares from its fork server: those that read nothing of a
# function's environment on import (not `diskport.observability`, whose logger, tracer and metrics do, nor any
# module that reads the settings on import; tests/unit/emulator/test_fork_server.py checks it).
PRELOADED_SERVICE_MODULES = (
    "diskport.api.models",
    "diskport.domain.requests",
    "diskport.domain.source_buckets",
    "diskport.engine",
    "diskport.errors",
    "diskport.settings",
)
