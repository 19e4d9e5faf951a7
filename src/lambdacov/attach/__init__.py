"""Attaching the layer to functions, and detaching it exactly.

:mod:`~lambdacov.attach.plan` computes what attach and detach change on one
function (pure: configuration in, a plan out); :mod:`~lambdacov.attach.fleet`
applies plans over many functions; :mod:`~lambdacov.attach.selection`
resolves names, patterns and tags; :mod:`~lambdacov.attach.record` keeps what
attach changed in the function's tags; :mod:`~lambdacov.attach.iam` is the
least-privilege policy and ``--grant``.
"""
