"""Stage 6, reporting: reads the TestResults of every variant and writes the compatibility
report (Markdown, JSON and the heatmap PNG)."""
