"""Core: what every layer may use and that knows nothing of studies: the one-line user
errors, atomic file writes, redaction of secrets, strict parsing helpers, YAML reading, the
process environment (threads, matplotlib backend) and figure saving.

May import: the standard library and third-party libraries only (no project package, no
PyTorch, Ray or MLflow; Optuna only to quiet its logging)."""
