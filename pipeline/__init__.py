"""The machinery behind the example: what main.py's steps call (see the README's file map)."""
