"""Versioned reports and their figures."""
