"""Real services for the tests (dockerd, docker-registry), started and stopped by the tests."""
