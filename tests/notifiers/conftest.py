"""The moto server the EventBridge and SQS tests share."""

from tests.notifiers.moto import aws, moto_url

__all__ = ["aws", "moto_url"]
