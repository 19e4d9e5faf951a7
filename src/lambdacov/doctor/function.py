"""The function: exists, Python, the layer, the wiring, resources and network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coverage_wrapper.models import CoverageConfig
from lambdacov import conventions
from lambdacov.aws import Retrier, error_code
from lambdacov.doctor.model import Check, fail, ok, skipped, warn
from lambdacov.layer.publish import newest_layer_version

#: Below this much memory Lambda gives a function under 1/7 of a vCPU (CPU scales with
#: memory, one vCPU at 1,769 MB); coverage's start (~0.2 s at a full core) and boto3's
#: first client (~0.8 s) then take several seconds of cold start (docs/doctor.md).
MIN_MEMORY_MB = 256
#: A timeout below this leaves little room for a cold start with coverage and boto3.
MIN_TIMEOUT_S = 10
#: Seconds kept beyond COVERAGE_UPLOAD_TIMEOUT for the delivery itself to finish in time.
UPLOAD_HEADROOM_S = 2
# A check asks once, as the other checks do: the runner's guard turns a refusal or
# throttling into a skipped check that says why, rather than a doctor that waits.
_ONE_ATTEMPT = Retrier(attempts=1)


def check_exists(lambda_client: Any, function: str) -> tuple[Check, dict[str, Any] | None]:
    """Read the function's configuration; fail when it does not exist."""
    try:
        config: dict[str, Any] = lambda_client.get_function_configuration(FunctionName=function)
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            return (
                fail(
                    "function.exists",
                    f"no function {function!r} in this account and region",
                    "check the name and --region",
                ),
                None,
            )
        raise
    arch = ",".join(config.get("Architectures") or ["x86_64"])
    detail = f"{config.get('Runtime') or config.get('PackageType', '?')} {arch}"
    return ok("function.exists", detail, arn=config.get("FunctionArn", "")), config


#: What a container image needs, in the words every image check uses.
IMAGE_FIX = (
    "build the layer's files for the image's Python and architecture (`lambdacov build-layer "
    "--python 3.X --arch ARCH --format dir -o lambdacov-layer`), add `COPY lambdacov-layer/ /opt/` "
    "to the Dockerfile, and deploy the new image (docs/where-it-runs.md)"
)


def is_image(config: Mapping[str, Any]) -> bool:
    """Whether the function is a container image (PackageType Image): no layers, no Runtime."""
    return config.get("PackageType") == "Image"


def image_command(config: Mapping[str, Any]) -> list[str]:
    """A container image function's ImageConfig command ([] when the image's CMD applies)."""
    shown = (config.get("ImageConfigResponse") or {}).get("ImageConfig") or {}
    return [str(item) for item in shown.get("Command") or []]


def check_runtime(config: Mapping[str, Any]) -> Check:
    """Is it a zip function on a Python runtime lambdacov has a layer for, or a container image?"""
    if is_image(config):
        return ok(
            "function.runtime",
            "container image: its Python is the image's, lambdacov's files must be in the image "
            "(function.image)",
        )
    runtime = str(config.get("Runtime", ""))
    if runtime in conventions.PYTHON_RUNTIMES:
        return ok("function.runtime", runtime)
    supported = ", ".join(conventions.PYTHON_RUNTIMES)
    return fail(
        "function.runtime",
        f"{runtime or 'no runtime'} is not supported",
        f"lambdacov supports {supported}",
    )


def _python(runtime: str) -> str:
    return runtime.replace("python", "")


def check_layer(config: Mapping[str, Any]) -> tuple[Check, str | None]:
    """Is exactly one lambdacov layer attached, for this Python and architecture?"""
    if is_image(config):
        return skipped(
            "function.layer", "container image: layers do not apply (function.image)"
        ), None
    arns = [str(layer["Arn"]) for layer in config.get("Layers") or []]
    ours = [arn for arn in arns if conventions.is_lambdacov_layer_arn(arn)]
    attach = "run `lambdacov attach FUNCTION`"
    if not ours:
        return fail("function.layer", "no lambdacov layer attached", attach), None
    if len(ours) > 1:
        return fail(
            "function.layer",
            f"{len(ours)} lambdacov layers attached: {', '.join(ours)}",
            "keep one: `lambdacov attach FUNCTION` replaces them",
        ), None
    arn = ours[0]
    parsed = conventions.parse_layer_name(arn.split(":")[6])
    assert parsed is not None  # is_lambdacov_layer_arn parsed it already
    python, arch = parsed
    runtime = _python(str(config.get("Runtime", "")))
    function_arch = (config.get("Architectures") or ["x86_64"])[0]
    if runtime and python != runtime:
        return fail(
            "function.layer",
            f"the layer is for Python {python}, the function runs {runtime}",
            attach,
        ), arn
    if arch != function_arch:
        return fail(
            "function.layer",
            f"the layer is for {arch}, the function runs on {function_arch}",
            attach,
        ), arn
    return ok("function.layer", arn.split(":", 6)[6]), arn


def check_layer_current(lambda_client: Any, layer_arn: str) -> Check:
    """Is the attached version the newest version of that layer?"""
    base, attached = layer_arn.rsplit(":", 1)
    newest = newest_layer_version(lambda_client, base, _ONE_ATTEMPT) or (
        # Some endpoints (moto) accept only the name; the name finds the caller's own layer.
        newest_layer_version(lambda_client, base.split(":")[6], _ONE_ATTEMPT)
    )
    if newest is None:
        return skipped("function.layer-current", f"no versions listed for {base}")
    described = conventions.parse_layer_description(str(newest.get("Description", "")))
    label = f" (lambdacov {described[0]})" if described else ""
    if int(attached) >= int(newest["Version"]):
        return ok("function.layer-current", f"version {attached} is the newest{label}")
    return warn(
        "function.layer-current",
        f"version {attached} attached, version {newest['Version']} is the newest{label}",
        "run `lambdacov attach FUNCTION` to move to the newest version",
        attached=int(attached),
        newest=int(newest["Version"]),
    )


def check_wiring(config: Mapping[str, Any]) -> Check:
    """Is zero-code instrumentation wired consistently, and never pointing at itself?"""
    env: Mapping[str, str] = (config.get("Environment") or {}).get("Variables") or {}
    command = image_command(config)
    # An image function's handler is its ImageConfig command (attach redirects it there).
    handler = (
        command[0] if is_image(config) and len(command) == 1 else str(config.get("Handler", ""))
    )
    wrapper = env.get(conventions.EXEC_WRAPPER_VAR, "")
    original = env.get(conventions.ORIGINAL_HANDLER_VAR, "")
    following = env.get(conventions.NEXT_WRAPPER_VAR, "")
    redirect = conventions.REDIRECT_HANDLER
    reattach = "run `lambdacov attach FUNCTION` to rewire it"
    if original == redirect:
        return fail(
            "function.wiring", f"{conventions.ORIGINAL_HANDLER_VAR} points at itself", reattach
        )
    if following == conventions.WRAPPER_PATH:
        return fail("function.wiring", f"{conventions.NEXT_WRAPPER_VAR} chains to itself", reattach)
    if handler == redirect and not original:
        return fail(
            "function.wiring",
            f"handler is {redirect} but {conventions.ORIGINAL_HANDLER_VAR} is not set",
            reattach,
        )
    if wrapper == conventions.WRAPPER_PATH:
        chain = f", then {following}" if following else ""
        return ok("function.wiring", f"exec wrapper {wrapper}{chain}")
    if handler == redirect:
        return ok("function.wiring", f"handler redirect to {original}")
    other = f" ({conventions.EXEC_WRAPPER_VAR}={wrapper} is another tool's)" if wrapper else ""
    fix = (
        "to redirect its ImageConfig command"
        if is_image(config)
        else f"to set {conventions.EXEC_WRAPPER_VAR}"
    )
    return warn(
        "function.wiring",
        f"not wired for zero-code instrumentation{other}: coverage is recorded only where the "
        "code uses @coverage_handler or CoverageContext",
        f"run `lambdacov attach FUNCTION` {fix}",
    )


def check_resources(config: Mapping[str, Any], coverage: CoverageConfig | None) -> Check:
    """Do memory and timeout leave room for coverage's start and one upload?"""
    memory = int(config.get("MemorySize") or 128)
    timeout = int(config.get("Timeout") or 3)
    upload = coverage.upload_timeout if coverage else 10.0
    needed = max(MIN_TIMEOUT_S, upload + UPLOAD_HEADROOM_S)
    problems: list[str] = []
    hints: list[str] = []
    if memory < MIN_MEMORY_MB:
        problems.append(f"memory {memory} MB is below {MIN_MEMORY_MB} MB")
        hints.append(f"raise MemorySize to {MIN_MEMORY_MB} MB or more")
    if timeout < needed:
        problems.append(
            f"timeout {timeout} s is below {needed:g} s "
            f"(COVERAGE_UPLOAD_TIMEOUT {upload:g} s + {UPLOAD_HEADROOM_S} s, "
            f"at least {MIN_TIMEOUT_S} s)"
        )
        hints.append("raise the timeout or lower COVERAGE_UPLOAD_TIMEOUT")
    if problems:
        return warn("function.resources", "; ".join(problems), "; ".join(hints))
    return ok("function.resources", f"{memory} MB, timeout {timeout} s")


def check_vpc(ec2: Any, config: Mapping[str, Any], region: str) -> Check:
    """A function in a VPC reaches S3 only through an S3 endpoint or a NAT gateway."""
    vpc_config = config.get("VpcConfig") or {}
    subnets = list(vpc_config.get("SubnetIds") or [])
    if not subnets:
        return ok("function.vpc", "not in a VPC: S3 is reached over AWS's network")
    # The VPC is taken from the subnets: what the function really runs in.
    found = ec2.describe_subnets(SubnetIds=subnets).get("Subnets", [])
    vpc_ids = sorted({str(s["VpcId"]) for s in found}) or [str(vpc_config.get("VpcId", ""))]
    vpc = vpc_ids[0]
    service = f"com.amazonaws.{region}.s3"
    endpoints = ec2.describe_vpc_endpoints(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "service-name", "Values": [service]}]
    ).get("VpcEndpoints", [])
    if endpoints:
        first = endpoints[0]
        kind = str(first.get("VpcEndpointType", "")).lower() or "S3"
        return ok("function.vpc", f"{vpc} has an S3 {kind} endpoint {first['VpcEndpointId']}")
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    for table in tables.get("RouteTables", []):
        for route in table.get("Routes", []):
            if route.get("DestinationCidrBlock") == "0.0.0.0/0" and route.get("NatGatewayId"):
                return ok("function.vpc", f"{vpc} routes to S3 through {route['NatGatewayId']}")
    return warn(
        "function.vpc",
        f"the function runs in {vpc}, which has no S3 endpoint and no NAT route: "
        "uploads will time out (ConnectTimeoutError)",
        f"add an S3 gateway endpoint ({service}) to the subnets' route tables",
        vpc=vpc,
    )
