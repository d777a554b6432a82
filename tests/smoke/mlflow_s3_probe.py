"""Run inside the MLflow container (stdin to `python -`): the SHA-256 of one object of the
server's s3:// artifact destination. The image's own entrypoint reads the settings (bucket,
prefix, endpoint, keys file, CA, addressing style), so the probe sees the store exactly as the
server does and needs no S3 key of its own. Argument: the key below the destination. Prints the
hex digest."""

import hashlib
import importlib.util
import os
import shutil
import sys
from importlib.machinery import SourceFileLoader

import boto3
from botocore.config import Config

spec = importlib.util.spec_from_loader(
    "entrypoint", SourceFileLoader("entrypoint", shutil.which("entrypoint"))
)
entrypoint = importlib.util.module_from_spec(spec)
sys.modules["entrypoint"] = entrypoint  # its dataclasses look their module up
spec.loader.exec_module(entrypoint)
settings = entrypoint.load_settings(os.environ)
os.environ.update(settings.s3_environment())
bucket, prefix = entrypoint.s3_bucket_and_prefix(settings.artifact_uri)
client = boto3.client(
    "s3",
    endpoint_url=settings.s3_endpoint_url or None,
    config=Config(s3={"addressing_style": settings.s3_addressing_style}),
)
key = "/".join(part for part in (prefix, sys.argv[1]) if part)
body = client.get_object(Bucket=bucket, Key=key)["Body"]
digest = hashlib.sha256()
for chunk in iter(lambda: body.read(1 << 20), b""):
    digest.update(chunk)
print(digest.hexdigest())
