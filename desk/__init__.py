"""The core of 311 for Cities: cases, workflow, storage, SLA clock, follow-ups, the pipeline.

This package imports none of the channel, NLP or knowledge packages; they implement its ports.
"""
