"""Servers for the benchmarks: tools/cloud_server.py (or another HTTP server) in a subprocess on a loopback port."""
import os
import socket
import subprocess
import sys
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    """A TCP port on loopback that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config_file, weights, opts, log_path, env=None, timeout_s=300):
    """(process, url) of a healthy server; ``env`` replaces variables of this process's environment
    (None values remove them). Raises RuntimeError with the log's tail when it does not come up."""
    port = free_port()
    cmd = [sys.executable, os.path.join(ROOT, "tools", "cloud_server.py"), "--config-file", config_file,
           "--weights", weights, "--port", str(port), *opts]
    return start_http(cmd, port, log_path, env, timeout_s)


def start_http(cmd, port, log_path, env=None, timeout_s=300):
    """(process, url) of the HTTP server that ``cmd`` starts on loopback ``port``, once its /healthz answers 200
    (see :func:`start_server`)."""
    full_env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    with open(log_path, errors="replace") as f:
        raise RuntimeError(f"the server did not come up (exit code {proc.poll()}):\n{f.read()[-4000:]}")
