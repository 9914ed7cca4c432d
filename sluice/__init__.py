"""The roof: the root command line `sluice` and the demo's wiring of curation's shards into the trainer.
The one place that imports curation, annotation and training together."""
