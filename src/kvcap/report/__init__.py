"""Reports: text (terminal) and JSON renderings of a Plan."""
