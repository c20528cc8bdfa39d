"""HTTP serving of model directories with BentoML."""
