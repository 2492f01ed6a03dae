"""Reward-model audit: bias probes, steering-artifact leakage, sycophancy, ensembles and the Goodhart curve.

- `latentrm rm audit` (stage.py): a registry of named probes (probes.py, lens.py,
  ensemble.py), each returning numbers, a verdict (pass / flag / skip / info) and a
  summary line; writes `<run-dir>/audit/report.json` and PNG plots.
- `latentrm rm goodhart` (goodhart.py): best-of-n and checkpoint curves of proxy and
  gold score against sqrt(KL), with Gao et al. 2022 fits.

Nothing heavy is imported here; import the submodules you need.
"""
