"""Web layer: FastAPI app, routes, schemas, error mapping, CLI."""
