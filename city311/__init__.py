"""The composition root: CLI, web app and worker. The only package that wires the others."""
