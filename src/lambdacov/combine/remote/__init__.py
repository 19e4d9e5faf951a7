"""Combining at scale on AWS Lambda: ``lambdacov combine --remote`` and the combiner function.

- :mod:`lambdacov.combine.remote.plan`: shards, key layout of partials (pure);
- :mod:`lambdacov.combine.remote.invokers`: the combiner on AWS Lambda or in local emulators;
- :mod:`lambdacov.combine.remote.run`: fan-out, retries, incremental days, reduce, final merge;
- :mod:`lambdacov.combine.remote.executor`: where the combiner runs (AWS Lambda or local emulators);
- :mod:`lambdacov.combine.remote.deploy`: the combiner function, its layer and least-privilege role.

The shard worker itself runs in Lambda: :mod:`coverage_wrapper.shard`.
"""

from __future__ import annotations

from lambdacov.combine.remote.invokers import AwsInvoker, Invoker, LocalInvoker, ShardFailed
from lambdacov.combine.remote.run import (
    RemoteCombineError,
    RemoteCombineResult,
    RemoteSettings,
    RemoteStats,
    combine_remote,
)

__all__ = [
    "AwsInvoker",
    "Invoker",
    "LocalInvoker",
    "RemoteCombineError",
    "RemoteCombineResult",
    "RemoteSettings",
    "RemoteStats",
    "ShardFailed",
    "combine_remote",
]
