#!/usr/bin/env bash
# Runs in the kafka container next to the broker (docker-compose.sasl.yml): once the loopback PLAINTEXT
# listener answers, create (or update) the SCRAM-SHA-512 credential of every paxsim user from its password file
# (/opt/paxsim-kafka/users/<user>), then apply every ACL of acls.txt (`paxsim topics acls`). Idempotent; the
# container's healthcheck stays red until /tmp/paxsim-sasl-ready exists.
set -u
bin=/opt/kafka/bin
boot=localhost:19092
for _ in $(seq 1 90); do
    "$bin/kafka-broker-api-versions.sh" --bootstrap-server "$boot" > /dev/null 2>&1 && break
    sleep 2
done
for file in /opt/paxsim-kafka/users/paxsim-*; do
    user=$(basename "$file")
    password=$(cat "$file")
    if ! "$bin/kafka-configs.sh" --bootstrap-server "$boot" --alter --entity-type users --entity-name "$user" \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" > /dev/null; then
        echo "could not create the SCRAM credential of $user" >&2
        exit 1
    fi
    echo "SCRAM-SHA-512 credential ready for $user"
done
n=0
while IFS= read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    if ! eval "$bin/$line" > /dev/null; then  # lines are shell-quoted by `paxsim topics acls`
        echo "could not apply: $line" >&2
        exit 1
    fi
    n=$((n + 1))
done < /opt/paxsim-kafka/acls.txt
echo "$n ACL grants applied"
touch /tmp/paxsim-sasl-ready
