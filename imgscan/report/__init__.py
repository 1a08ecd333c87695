"""Report writers: each renders a ScanResult to a text stream."""
