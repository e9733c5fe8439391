"""Auditing a bundle's corpus: what is in it (:mod:`~spacerini.audit.analyze`), which benchmark
examples it contains (:mod:`~spacerini.audit.contamination`), exact n-gram counts
(:mod:`~spacerini.audit.ngrams`) and the charts both reports draw (:mod:`~spacerini.audit.plots`).

Nothing heavy is imported here: each module loads numpy, pyarrow or matplotlib when used.
"""
