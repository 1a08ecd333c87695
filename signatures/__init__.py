"""Rule data files (installed as imgscan.signatures)."""
