"""One script per figure; each regenerates its figure (PNG and PDF) from data."""
