#!/usr/bin/env bash
# Runs in the kafka container next to the broker (docker-compose.sasl.yml): once the loopback PLAINTEXT
# listener answers, create (or update) the SCRAM-SHA-512 credential of the paxsim user from the compose
# secret. Idempotent; the container's healthcheck stays red until the credential exists.
set -u
user="${PAXSIM_KAFKA_USER:-paxsim}"
password=$(cat /run/secrets/kafka_client_password)
for _ in $(seq 1 90); do
    if /opt/kafka/bin/kafka-configs.sh --bootstrap-server localhost:19092 --alter --entity-type users \
        --entity-name "$user" --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" > /dev/null 2>&1; then
        echo "SCRAM-SHA-512 credential ready for user $user"
        exit 0
    fi
    sleep 2
done
echo "could not create the SCRAM credential for $user" >&2
exit 1
