"""Every deploy reaches the storage function's aliases: checked without AWS.

Transforms template.yaml with the SAM translator, as `sam deploy`'s CloudFormation transform
does, for several sets of parameter values, and finds the version behind the `admin` and the
`runtime` alias as CloudFormation sees it: its logical id and its create-only properties (from
CloudFormation's resource schema, as cfn-lint ships it), with the parameters and the
configuration digest resolved (the digest by running the template's own digest function). A
different logical id or create-only property is a new version, published by the deploy, that
both aliases move to. Checks that:
  - a deploy that changes one parameter the function reads gives both aliases a new version,
    for the classic and the Managed Instances function, and so does a change of code;
  - the same values twice give the same version (a deploy that changes nothing publishes none);
  - the digest's lists name every parameter the storage functions' configuration reads;
  - nothing in the template sets ADMIN_ON_ANY_QUALIFIER (local runs only).

Usage: python scripts/check-versions.py [TEMPLATE]   (in the venv of scripts/ensure-tools.sh)
"""

import copy
import json
import logging
import os
import re
import sys
import urllib.request
from unittest import mock

from cfnlint.schema import PROVIDER_SCHEMA_MANAGER
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

REGION = "us-east-1"
# A secret, and subnets for the Managed Instances sets; the rest are the defaults.
BASE = {"DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:lti-AbCdEf"}
MANAGED = {
    "ManagedInstances": "true",
    "SubnetIds": "subnet-0123456789abcdef0",
    "SecurityGroupIds": "sg-0123456789abcdef0",
}
# One change each, of parameters the storage function's configuration reads.
CHANGES = [
    {"LogLevel": "debug"},
    {"DynamicRegistration": "true"},
    {"DatabaseUrl": "postgres://db.example.com:5432/lti?sslmode=verify-full"},
    {"SessionTtlSeconds": "3600"},
    {"LayerArns": "arn:aws:lambda:us-east-1:123456789012:layer:ca-bundle:3"},
]
# Parameters a storage function reads that no version holds: the reservation and scaling are
# the function's (and the alias's), not a version's configuration.
NOT_VERSIONED = {"StorageReservedConcurrency", "ManagedInstancesMaxEnvironments"}


class Failed(Exception):
    pass


class NoPolicies:
    """The functions name their roles: no SAM policy template needs IAM's list."""

    def load(self):
        return {}


def load(path):
    with open(path, encoding="utf-8") as file:
        template = yaml_parse(file.read())
    # As `sam package` leaves it: the code's location in S3.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://lti-storage-artifacts/0123456789abcdef"
    return template


def translated(template, values):
    return transform(copy.deepcopy(template), dict(values), NoPolicies())


def parameter_values(template, given):
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(given)
    return values


class Resolver:
    """Resolves what a version's create-only properties hold, as CloudFormation would."""

    def __init__(self, resources, values):
        self.resources = resources
        self.values = values
        self.digests = None

    def attribute(self, name):
        resource, _, attribute = name.partition(".")
        if self.resources.get(resource, {}).get("Type") == "Custom::ConfigurationDigest":
            return self.digest(resource)[attribute]
        return "${" + name + "}"  # known only in AWS; the same for every set of values

    def digest(self, name):
        """The Data the template's digest function answers, run here on the resolved values."""
        if self.digests is None:
            properties = self.resources[name]["Properties"]
            function = properties["ServiceToken"]["Fn::GetAtt"][0]
            code = self.resources[function]["Properties"]["Code"]["ZipFile"]
            given = {key: self.resolve(value) for key, value in properties.items()}
            event = {"ResourceProperties": given, "StackId": "stack", "RequestId": "request",
                     "LogicalResourceId": name, "ResponseURL": "https://s3.example/response"}
            answered = []
            with mock.patch.object(urllib.request, "urlopen",
                                   lambda request, timeout: answered.append(request) or mock.Mock()):
                namespace = {}
                exec(compile(code, f"{function}.ZipFile", "exec"), namespace)
                namespace["handler"](event, None)
            (request,) = answered
            self.digests = json.loads(request.data)["Data"]
        return self.digests

    def resolve(self, value):
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self.values.get(value["Ref"], "${" + value["Ref"] + "}")
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            return re.sub(r"\$\{([^}]+)\}",
                          lambda m: self.values.get(m[1]) or self.attribute(m[1]),
                          value["Fn::Sub"])
        if set(value) == {"Fn::Join"}:
            separator, items = value["Fn::Join"]
            items = self.resolve(items)
            return items if isinstance(items, str) else separator.join(items)
        return {key: self.resolve(item) for key, item in value.items()}


def version_ids(alias):
    """The logical ids of the versions an alias may name (both sides of an Fn::If)."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            if "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Version":
                found.append(value["Fn::GetAtt"][0])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(alias["Properties"]["FunctionVersion"])
    return found


def versions(template, given):
    """{(alias, function): the version behind it, as CloudFormation tells versions apart}."""
    values = parameter_values(template, given)
    resources = translated(template, values)["Resources"]
    create_only = [path.split("/")[-1] for path in PROVIDER_SCHEMA_MANAGER.get_resource_schema(
        REGION, "AWS::Lambda::Version").schema["createOnlyProperties"]]
    resolver = Resolver(resources, values)
    found = {}
    for alias in resources.values():
        if alias["Type"] != "AWS::Lambda::Alias":
            continue
        for version_id in version_ids(alias):
            version = resources[version_id]
            function = version["Properties"]["FunctionName"]["Ref"]
            properties = {key: resolver.resolve(version["Properties"][key])
                          for key in create_only if key in version["Properties"]}
            found[(alias["Properties"]["Name"], function)] = (version_id, properties)
    if {alias for alias, _ in found} != {"admin", "runtime"}:
        raise Failed(f"expected an admin and a runtime alias, found {sorted(found)}")
    return found


def check_new_versions(template, base, change, variant):
    before, again = versions(template, base), versions(template, base)
    if before != again:
        raise Failed(f"{variant}: the same parameter values gave other versions")
    after = versions(template, {**base, **change})
    for key, version in before.items():
        if key[1] != variant:
            continue
        if after[key] == version:
            raise Failed(f"a deploy changing only {change} leaves the {key[0]} alias of {key[1]} on "
                         f"its old version ({version[0]}): no new version is published")
    print(f"check-versions: {variant}: {change} publishes a new version for both aliases")


def check_code_change(template, base, variant):
    moved = copy.deepcopy(template)
    for resource in moved["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] += "-new"
    before, after = versions(template, base), versions(moved, base)
    for key, version in before.items():
        if key[1] == variant and after[key] == version:
            raise Failed(f"new code leaves the {key[0]} alias of {variant} on its old version")


def parameters_in(value, parameters):
    """The template parameters `value` refers to (Ref, and ${...} of Fn::Sub)."""
    if isinstance(value, list):
        return set().union(*(parameters_in(item, parameters) for item in value))
    if not isinstance(value, dict):
        return set()
    named = set()
    if isinstance(value.get("Ref"), str):
        named.add(value["Ref"])
    if isinstance(value.get("Fn::Sub"), str):
        named.update(re.findall(r"\$\{([^}.]+)\}", value["Fn::Sub"]))
    return (named & parameters) | parameters_in(list(value.values()), parameters)


def check_digest_is_complete(template):
    """Each storage function's parameters are in its digest: Common and its own list."""
    resources = translated(template, parameter_values(template, BASE))["Resources"]
    parameters = set(template["Parameters"])
    digests = [r for r in resources.values() if r["Type"] == "Custom::ConfigurationDigest"]
    if len(digests) != 1:
        raise Failed(f"expected one configuration digest, found {len(digests)}")
    digest = digests[0]["Properties"]
    for function, own in [("StorageFunction", "Classic"), ("StorageManagedFunction", "Managed")]:
        read = parameters_in(resources[function]["Properties"], parameters) - NOT_VERSIONED
        listed = parameters_in([digest["Common"], digest[own]], parameters)
        if read != listed:
            raise Failed(f"{function} reads {sorted(read - listed)} that its digest lacks, and "
                         f"the digest lists {sorted(listed - read)} that it does not read")
    print("check-versions: the digest lists every parameter the storage functions read")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    # The translator warns of the usage metrics it never sends.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    template = load(path)
    try:
        if "ADMIN_ON_ANY_QUALIFIER" in json.dumps(template):
            raise Failed("the template sets ADMIN_ON_ANY_QUALIFIER, which is for local runs only")
        for variant, base in [("StorageFunction", BASE), ("StorageManagedFunction", {**BASE, **MANAGED})]:
            check_code_change(template, base, variant)
            for change in CHANGES:
                check_new_versions(template, base, change, variant)
        check_digest_is_complete(template)
    except Failed as failure:
        print(f"check-versions: {path}: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
