"""The file suffixes the pack reads as videos (reference videos, a batch's target clips and outputs).
No imports: the batch runner reads it without loading torch."""
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".webp")
