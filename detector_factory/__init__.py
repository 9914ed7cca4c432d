"""The detector factory: the data and training scripts for the models nobody publishes (DESIGN rule 9), the
structure detector, its fusion heads and the watermark map that stage 1's signals load. Each trainer runs as
`python -m detector_factory.train_...` and writes its weights and model card under curation/signals/weights.
It builds on the lower layers (schemas, plumbing, curation, synthetic) and nothing above them."""
