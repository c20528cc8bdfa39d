"""`bilstm report`: self-contained HTML reports with PNG figures and a ``report.json`` of every number shown.

* ``bilstm report model MODEL_DIR DATA_FILE --out DIR``: a model directory on a labelled file. The headline
  numbers are the predictor's own ``evaluate`` (what ``bilstm evaluate`` prints); the breakdowns (confusion
  matrix, calibration, entity-type confusion, BLEU by length, attention, perplexity by position…) come from
  the same reading of the file (:mod:`toolkit.report.model` and one module per task).
* ``bilstm report run RUN_DIR --out DIR``: a training run's learning curves from its Lightning ``metrics.csv``
  (:mod:`toolkit.report.run`).

Page assembly and escaping live in :mod:`toolkit.report.html`, the matplotlib drawing in
:mod:`toolkit.report.figures`. Nothing here is imported by the rest of the toolkit, and importing this package
imports nothing heavy (the CLI's ``configure`` runs on every ``bilstm`` call).
"""
