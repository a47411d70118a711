"""A local S3-compatible server for tests and benchmarks: moto's server (the test extra) on 127.0.0.1 and no
other address, with credentials checked (IAM on). Not for data that matters: it keeps objects in memory.

    server = S3Server(log_file)       # started; server.stop() ends it
    os.environ.update(server.env())   # AWS_ENDPOINT_URL and the access key of a user allowed s3:*
    url = f"s3://{server.bucket()}"   # a new, empty bucket
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

# moto lets this many requests through before it checks credentials: the three IAM calls that make the
# test user and its key (create_user, put_user_policy, create_access_key)
BOOTSTRAP_ACTIONS = 3
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, log: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(BOOTSTRAP_ACTIONS))
        self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                     stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"moto's server did not start (log: {log})")
                time.sleep(0.2)
        self.key, self.secret = self._make_user()

    def _make_user(self) -> tuple[str, str]:
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        iam.create_user(UserName="simgen")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="simgen", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="simgen")["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def env(self, **overrides: str) -> dict[str, str]:
        """The variables a client of this server needs (a user's shell or a cluster node would have them)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": REGION, **overrides}

    def bucket(self) -> str:
        import boto3

        name = f"sims-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=self.key,
                     aws_secret_access_key=self.secret).create_bucket(Bucket=name)
        return name

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (it runs on this machine's cores, beside what it serves)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
