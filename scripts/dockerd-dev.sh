#!/usr/bin/env bash
# Start a private dockerd for manual work, exactly as the engine tests do (see
# tests/infra/dockerd.py): own data-root, exec-root and unix socket under a temp dir,
# no networking, nofile=20000, overlay2 with a fallback to vfs. Needs root and Debian's
# docker.io. Prints the DOCKER_HOST to use; Ctrl-C (or SIGTERM) stops it and removes
# the temp dir.
#
#   sudo scripts/dockerd-dev.sh            # then, in another shell:
#   export DOCKER_HOST=unix:///tmp/imgscan-dockerd-XXXX/docker.sock
#   DOCKER_BUILDKIT=0 docker build --network=none -t demo:1 some/dir
#   imgscan scan docker://demo:1
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "${PYTHON:-python3}" - "$repo" <<'EOF'
import signal
import sys
import threading

sys.path.insert(0, sys.argv[1])
from tests.infra.dockerd import DockerdError, start_dockerd, stop_dockerd

try:
    d = start_dockerd()
except DockerdError as exc:
    print(f"dockerd-dev: {exc}", file=sys.stderr)
    sys.exit(1)
print(f"dockerd up in {d.start_seconds:.2f}s, storage driver {d.storage_driver}")
print(f"export DOCKER_HOST={d.host}")
print(f"log: {d.log}   (Ctrl-C to stop)", flush=True)
done = threading.Event()
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda *_: done.set())
try:
    while not done.wait(1.0):
        if d.proc.poll() is not None:
            print(f"dockerd exited with {d.proc.returncode}; see {d.log}", file=sys.stderr)
            break
finally:
    stop_dockerd(d)
    print("dockerd stopped, temp dir removed")
EOF
