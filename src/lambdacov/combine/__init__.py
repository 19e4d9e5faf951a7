"""Combining the objects in S3 into the reports developers use.

:mod:`~lambdacov.combine.collect` lists and fetches the objects (date
partitions, the ETag cache); :mod:`~lambdacov.combine.merge` merges them onto
the source root; :mod:`~lambdacov.combine.reports` writes the reports;
:mod:`~lambdacov.combine.remote` fans a combine out to the combiner function.
"""
