"""Run inside the MLflow container (stdin to `python -`): the SHA-256 of one object of the
server's s3:// artifact destination, read with the server's own settings (endpoint, keys file,
CA, addressing style), so the check needs no S3 key of its own. Argument: the key below the
destination. Prints the hex digest."""

import hashlib
import os
import sys
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

destination = urlsplit(os.environ["MLFLOW_ARTIFACTS_DESTINATION"])
if os.environ.get("MLFLOW_S3_CREDENTIALS_FILE"):
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.environ["MLFLOW_S3_CREDENTIALS_FILE"]
client = boto3.client(
    "s3",
    endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None,
    verify=os.environ.get("MLFLOW_S3_CA_FILE") or None,
    config=Config(
        s3={"addressing_style": os.environ.get("MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE", "path")}
    ),
)
key = "/".join(part for part in (destination.path.strip("/"), sys.argv[1]) if part)
body = client.get_object(Bucket=destination.netloc, Key=key)["Body"]
digest = hashlib.sha256()
for chunk in iter(lambda: body.read(1 << 20), b""):
    digest.update(chunk)
print(digest.hexdigest())
