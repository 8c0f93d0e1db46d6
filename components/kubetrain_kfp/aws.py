"""boto3 clients configured the same way for every component.

The endpoint comes from boto3's standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`
environment (tests point it at moto on 127.0.0.1; private-link users at their VPC endpoint), or from
the explicit `endpoint_url` input. Retries are bounded: a job poller must not sit for minutes on an
HTTP 500 that will never go away.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_CONFIG = Config(
    user_agent_extra="kubetrain-kfp/0.1",
    retries={"mode": "standard", "max_attempts": 4},
)


def client(service: str, region: str = "", endpoint_url: str = "") -> Any:
    """A boto3 client; empty `region`/`endpoint_url` fall back to the standard AWS environment."""
    kwargs: dict[str, Any] = {"config": _CONFIG}
    if region:
        kwargs["region_name"] = region
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return boto3.client(service, **kwargs)  # type: ignore[call-overload]


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def is_not_found(exc: ClientError) -> bool:
    """SageMaker reports a missing job/model/endpoint as ValidationException ("Could not find")."""
    code = error_code(exc)
    if code in ("ResourceNotFound", "ResourceNotFoundException", "NoSuchEntity"):
        return True
    message = error_message(exc).lower()
    return code == "ValidationException" and ("not find" in message or "not found" in message)
