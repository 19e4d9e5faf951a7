"""The AWS invoker turns Lambda's answers into results, retryable failures or AWS errors."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdacov.aws import Retrier
from lambdacov.combine.merge import CombineRequest
from lambdacov.combine.remote import AwsInvoker, ShardFailed
from lambdacov.combine.remote.run import RemoteSettings, _Runner
from lambdacov.errors import AwsError, UsageError


class FakeLambda:
    """Lambda's Invoke as boto3 returns it, answering from a script."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        error, payload = answer
        response = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(payload).encode())}
        if error:
            response["FunctionError"] = "Unhandled"
        return response


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "no"}}, "Invoke")


def test_a_response_is_returned_and_the_call_is_synchronous() -> None:
    fake = FakeLambda((False, {"output_key": "k", "inputs": 3}))
    assert AwsInvoker(fake, "comb").invoke({"bucket": "b"}) == {"output_key": "k", "inputs": 3}
    assert fake.calls[0]["InvocationType"] == "RequestResponse"
    assert json.loads(fake.calls[0]["Payload"]) == {"bucket": "b"}


def test_function_errors_and_throttling_are_retryable_failures() -> None:
    timeout = {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 900 s"}
    fake = FakeLambda((True, timeout), client_error("TooManyRequestsException"))
    invoker = AwsInvoker(fake, "comb")
    with pytest.raises(ShardFailed, match=r"Sandbox\.Timedout: Task timed out"):
        invoker.invoke({})
    with pytest.raises(ShardFailed, match="TooManyRequestsException"):
        invoker.invoke({})


def test_a_missing_function_is_an_aws_error_at_once() -> None:
    fake = FakeLambda(client_error("ResourceNotFoundException"))
    with pytest.raises(AwsError, match="lambda:InvokeFunction on comb failed"):
        AwsInvoker(fake, "comb").invoke({})


def test_the_runner_retries_then_names_every_failed_shard() -> None:
    sleeps: list[float] = []
    retrier = Retrier(base_delay=1.0, sleep=sleeps.append, retry_on=frozenset({"ShardFailed"}))
    ok = (False, {"output_key": "x"})
    bad = (True, {"errorType": "E", "errorMessage": "boom"})
    fake = FakeLambda(bad, ok, bad, bad, bad)
    runner = _Runner(AwsInvoker(fake, "comb", concurrency=1), RemoteSettings(retrier=retrier))
    assert runner.run([("shard a", {})], "shards", None) == [{"output_key": "x"}]
    assert runner.retries == 1 and len(sleeps) == 1
    with pytest.raises(Exception, match=r"1 of 1 .* shard b; first error: E: boom") as failed:
        runner.run([("shard b", {})], "shards", None)
    assert type(failed.value).__name__ == "RemoteCombineError"


def test_the_local_executor_needs_a_local_endpoint() -> None:
    from lambdacov.aws import AwsContext, Clients
    from lambdacov.cli.combiner import remote_combine

    clients = Clients(AwsContext(region="us-east-1"))
    with pytest.raises(UsageError, match="local S3 only"):
        remote_combine(clients, CombineRequest("b"), executor="local")
    with pytest.raises(UsageError, match="--executor"):
        remote_combine(clients, CombineRequest("b"), executor="k8s")
