"""Image sources: docker-archive, OCI layout, local engine, registry."""
