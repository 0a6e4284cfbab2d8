"""The HTTP side of the service: the resolver every API function shares, who the caller is, and the answers."""
