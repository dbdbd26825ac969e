#!/usr/bin/env bash
# Secrets for docker-compose.sasl.yml, written to deploy/secrets/ (git-ignored):
#   secrets/kafka/ca.crt                 private testbed CA (clients verify the broker with it)
#   secrets/kafka/kafka.keystore.p12     broker key + certificate (SAN kafka, localhost, 127.0.0.1), PKCS12
#   secrets/kafka/keystore_password      its password (read by the apache/kafka start script)
#   secrets/kafka/kafka_server_jaas.conf SCRAM login module for the SASL_SSL listeners
#   secrets/kafka-users/paxsim-<user>    the SCRAM password of each Kafka user (admin, edge, gate, matcher,
#                                        dashboard, auditor; hex: safe in kafka-configs syntax)
#   secrets/ca.key                       the CA key; keep it off the testbed hosts once certificates are made
# Needs only openssl. Re-run with --force to replace everything (then `docker-compose ... down -v`).
set -euo pipefail
deploy=$(cd "$(dirname "$0")/.." && pwd)
out="$deploy/secrets"
kdir="$out/kafka"
if [[ -e "$kdir/kafka.keystore.p12" && "${1-}" != "--force" ]]; then
    echo "$kdir/kafka.keystore.p12 exists; use --force to replace the secrets" >&2
    exit 1
fi
umask 022
mkdir -p "$kdir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 3650 -subj "/CN=paxsim testbed CA" \
    -keyout "$out/ca.key" -out "$kdir/ca.crt" 2>/dev/null
chmod 600 "$out/ca.key"
openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=kafka" -keyout "$tmp/kafka.key" -out "$tmp/kafka.csr" 2>/dev/null
printf '%s\n' "subjectAltName=DNS:kafka,DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=critical,CA:FALSE" > "$tmp/kafka.ext"
openssl x509 -req -in "$tmp/kafka.csr" -CA "$kdir/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -CAserial "$tmp/ca.srl" \
    -days "${CERT_DAYS:-825}" -sha256 -extfile "$tmp/kafka.ext" -out "$tmp/kafka.crt" 2>/dev/null

openssl rand -hex 24 | tr -d '\n' > "$kdir/keystore_password"
openssl pkcs12 -export -name kafka -inkey "$tmp/kafka.key" -in "$tmp/kafka.crt" -certfile "$kdir/ca.crt" \
    -passout "file:$kdir/keystore_password" -out "$kdir/kafka.keystore.p12"
printf '%s\n' "KafkaServer {" "  org.apache.kafka.common.security.scram.ScramLoginModule required;" "};" > "$kdir/kafka_server_jaas.conf"
mkdir -p "$out/kafka-users"
for user in admin edge gate matcher dashboard auditor; do
    openssl rand -hex 24 | tr -d '\n' > "$out/kafka-users/paxsim-$user"
done

# The broker runs as uid 1000 and paxsim as uid 10001 in their containers: both read these bind mounts.
chmod 755 "$out" "$kdir" "$out/kafka-users"
chmod 644 "$kdir"/* "$out/kafka-users"/*
echo "secrets written to $out (the CA key is $out/ca.key)"
openssl x509 -in "$tmp/kafka.crt" -noout -subject -ext subjectAltName
