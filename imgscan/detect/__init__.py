"""Detectors: secrets in content and config, and hardening checks."""
