"""Boxwise backend: every rule and every byte of I/O. Never imports streamlit."""
