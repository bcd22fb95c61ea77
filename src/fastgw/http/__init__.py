"""Connection layer: client-side HTTP/1.1 protocol, request model and gateway-made replies."""
