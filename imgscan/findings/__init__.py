"""Finding construction: redaction, digests, fingerprints, baselines."""
