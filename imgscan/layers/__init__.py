"""Layer streaming: tar walker, overlay state, bounded content reads."""
