"""Video in and out for every image recipe: sources (files, image sequences, live streams,
webcams), a streaming reader and writer on PyAV, the loop that sends frames through a recipe's
Predictor, and MOTChallenge tracks (files and metrics)."""
