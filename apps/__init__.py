"""Applications on top of the served model: ``predict`` (a sentence or a file) and the demo page."""
