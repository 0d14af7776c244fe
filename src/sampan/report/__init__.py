"""Self-contained HTML run reports with SVG plots.

May import: metrics and the standard library.
"""
