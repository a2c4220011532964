"""Publishing to the Hugging Face Hub: `python -m hub push | deploy-space` (see hub/__main__.py).

Scripts, not library: this package does network I/O and prints; `twotowers` never imports it.
"""
