"""Batch jobs over files: labelling (``bilstm label``)."""
