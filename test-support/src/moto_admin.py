"""What a test does to the local Secrets Manager as an administrator would: one command, as
JSON on stdin, against the moto server at cmd["endpoint"]; the answer as JSON on stdout."""
import json
import sys
import urllib.request

import boto3

cmd = json.load(sys.stdin)
REGION = cmd["region"]
ENDPOINT = cmd["endpoint"]
ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}
ANYONE = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}


def client(service, keys):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=ENDPOINT,
        aws_access_key_id=keys["id"],
        aws_secret_access_key=keys["secret"],
        aws_session_token=keys.get("token"),
    )


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def setup():
    """An administrator, and two roles as Lambda functions have them (temporary credentials
    with a session token): `storage` may read secrets, `other` may do nothing. Then IAM is
    enforced: every later request must be signed right and allowed."""
    iam = client("iam", {"id": "AKIAIOSFODNN7EXAMPLE", "secret": "setup"})
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=policy(ALLOW_ALL))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    admin = {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    read = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}
    roles = {"storage": [read], "other": []}
    keys = {"admin": admin}
    sts = client("sts", admin)
    for name, statements in roles.items():
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=policy(ANYONE))["Role"]["Arn"]
        if statements:
            iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=policy(*statements))
        creds = sts.assume_role(RoleArn=arn, RoleSessionName=name)["Credentials"]
        keys[name] = {
            "id": creds["AccessKeyId"],
            "secret": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
        }
    request = urllib.request.Request(
        f"{ENDPOINT}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},  # not a form: moto reads the raw body
    )
    urllib.request.urlopen(request).read()
    return keys


def secrets():
    return client("secretsmanager", cmd["keys"])


op = cmd["op"]
if op == "setup":
    answer = setup()
elif op == "create-secret":
    answer = secrets().create_secret(Name=cmd["name"], SecretString=cmd["value"])["ARN"]
elif op == "put-secret-value":
    answer = secrets().put_secret_value(SecretId=cmd["id"], SecretString=cmd["value"])["VersionId"]
else:
    sys.exit(f"unknown op {op}")
json.dump(answer, sys.stdout)
