"""Benchmark reports: every agent, the oracle and human traces on one grid (:mod:`~cryorl.reporting.benchmark`),
the report written from them (:mod:`~cryorl.reporting.report`), its figures (:mod:`~cryorl.reporting.plots`) and
tables (:mod:`~cryorl.reporting.markdown`). The end of the flow data → Atlas → environment → agents → report.
"""
