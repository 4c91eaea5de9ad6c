"""The HTTP and WebSocket edge: FastAPI routes, thin around `service`."""
