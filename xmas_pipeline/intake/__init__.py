"""The HTTP intake (docs/architecture.md, "The intake"): `app.create_app`, `server.serve`."""
