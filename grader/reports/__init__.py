"""Turning results into text and pages: the terminal, the HTML feedback pages and their figures."""
