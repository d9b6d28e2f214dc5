"""The trainer and exporter: runs in its own process (`python -m backend train`), never in the app."""
