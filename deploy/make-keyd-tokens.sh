#!/usr/bin/env bash
# The key holder's credentials for docker-compose.yml, one file per role in deploy/secrets/keyd/ (git-ignored):
#   admin                                 enrolment and tools (audit scan)
#   edge, gate, matcher, dashboard, auditor  each stage's own, allowing only what that stage needs (policy/keyd.py)
#   master.key                            the master key sealing the key holder's state (only the key holder mounts it)
# Compose mounts each service's file as the secret keyd_token, so no token is in a container's environment;
# preflight refuses missing, short or shared ones. Re-run with --force to replace them (then restart the stack).
# The files are 0600 in a 0700 directory, owned by the containers' uid (10001; as root the script hands them over,
# otherwise it prints the chown to run): no other local user reads a credential.
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)/secrets/keyd"
if [[ -e "$out/admin" && "${1-}" != "--force" ]]; then
    echo "$out/admin exists; use --force to replace the key holder's credentials" >&2
    exit 1
fi
umask 077  # every credential, admin included, readable by its owner only
mkdir -p "$out"
chmod 700 "$out"
for role in admin edge gate matcher dashboard auditor; do
    # 32 random bytes, base64url without padding: 43 characters
    openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n' > "$out/$role"
    chmod 600 "$out/$role"
done
# the master key that seals the key holder's state volume: a secret, never a file inside that volume
openssl rand -hex 32 | tr -d '\n' > "$out/master.key"
chmod 600 "$out/master.key"
echo "key holder credentials written to $out (0600 files in a 0700 directory)"
# paxsim runs as uid 10001 in its containers and reads these bind-mounted files: they must be owned by it
if [[ "$(id -u)" == 0 ]]; then
    chown -R 10001:10001 "$out"
elif [[ "$(id -u)" != 10001 ]]; then
    echo "the containers run as uid 10001: hand them the files with  sudo chown -R 10001:10001 $out" >&2
fi
