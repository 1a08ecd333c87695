#!/bin/sh
# Start a throw-away docker-registry on 127.0.0.1 for local experiments, or run the
# registry test suite. Everything lives in a temp dir and is removed on exit.
#
#   scripts/registry-dev.sh plain|basic|token   # keep one registry up until Ctrl-C
#   scripts/registry-dev.sh test [pytest args]  # run the registry tests
#
# Needs Debian's docker-registry, apache2-utils (htpasswd -B) and openssl:
#   sudo apt-get install -y docker-registry apache2-utils openssl
# The Debian package also installs a systemd service on :5000; the tests never use it.
set -eu
cd "$(dirname "$0")/.."
mode="${1:-plain}"
for tool in docker-registry htpasswd openssl; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "registry-dev: $tool not found (apt-get install docker-registry apache2-utils openssl)" >&2
    exit 2
  }
done
case "$mode" in
  plain|basic|token)
    exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python3 -m tests.infra.registry "$mode"
    ;;
  test)
    shift
    exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python3 -m pytest -m registry \
      tests/test_registry_source.py tests/test_registry_push.py \
      tests/test_registry_auth.py tests/test_registry_reference.py "$@"
    ;;
  *)
    echo "usage: $0 plain|basic|token|test [pytest args]" >&2
    exit 2
    ;;
esac
