#!/usr/bin/env python3
"""gantry on a real network's terms: docker-registry behind tests/fault-proxy, which
adds LATENCY (default 25ms) to every chunk each way, so a round trip costs 2x that.

Reports, from one run each (RUNS=N takes the median of N):
1. an unsigned linux/amd64+arm64 push of examples/hello onto a 2-platform base,
   nothing changed since the last push: gantry's wall time against ko's, both at the
   added latency;
2. a key-signed linux/amd64+arm64+wasi/wasm rebuild of examples/hello: wall time at
   the latency and on loopback, and the effective sequential round trips,
   (latency wall - loopback wall) / round trip;
3. the requests that signed run sent, counted at the proxy.

Run through bench/run-network, which installs what it needs.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import GANTRY, ROOT, start_registry  # noqa: E402

LATENCY_MS = int(os.environ.get("LATENCY_MS", "25"))
RUNS = int(os.environ.get("RUNS", "1"))
PROXY = os.path.join(ROOT, "target", "tools", "fault-proxy", "fault-proxy")
PASSWORD = "bench"


def start_proxy(upstream, latency_ms):
    proc = subprocess.Popen([PROXY, "-upstream", upstream, "-latency", f"{latency_ms}ms"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        sys.exit(f"fault-proxy said {line!r}")
    return proc, line.removeprefix("listening on ")


def proxy_log(host, clear=False):
    req = urllib.request.Request(f"http://{host}/__proxy/log", method="DELETE" if clear else "GET")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null") or []


def timed(cmd, cwd, env=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stderr}")
    return time.perf_counter() - start


def median(fn):
    return statistics.median(fn() for _ in range(RUNS))


def main():
    hello = os.path.join(ROOT, "examples", "hello")
    with tempfile.TemporaryDirectory() as tmp:
        registry, host = start_registry(tmp)
        slow, slow_host = start_proxy(host, LATENCY_MS)
        try:
            platforms = "linux/amd64,linux/arm64"
            subprocess.run([GANTRY, "build", "--repo", f"{host}/base", "--tag", "v1", "--platform", platforms,
                            "--base", "scratch"], cwd=hello, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            base = f"{slow_host}/base:v1"
            # 1. Nothing changed: both tools push once to warm up, then are timed.
            gantry_cmd = [GANTRY, "build", "--repo", f"{slow_host}/gantry", "--platform", platforms,
                          "--base", base, "--sbom", "none", "--sign", "none", "."]
            ko_env = dict(os.environ, KO_DOCKER_REPO=f"{slow_host}/ko", KO_DEFAULTBASEIMAGE=base)
            ko_cmd = ["ko", "build", "--bare", "--insecure-registry", f"--platform={platforms}", "--sbom=none", "."]
            timed(gantry_cmd, hello)
            timed(ko_cmd, hello, ko_env)
            g = median(lambda: timed(gantry_cmd, hello))
            k = median(lambda: timed(ko_cmd, hello, ko_env))

            # 2 and 3. A signed 3-platform rebuild, at the latency and on loopback.
            keys = os.path.join(tmp, "keys")
            os.makedirs(keys)
            env = dict(os.environ, COSIGN_PASSWORD=PASSWORD)
            subprocess.run([GANTRY, "keygen", "--output-prefix", os.path.join(keys, "k")], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            signed = lambda h: [GANTRY, "build", "--repo", f"{h}/signed", "--platform",
                                "linux/amd64,linux/arm64,wasi/wasm", "--base", "scratch",
                                "--key", os.path.join(keys, "k.key"), "."]
            timed(signed(host), hello, env)
            loopback = median(lambda: timed(signed(host), hello, env))
            proxy_log(slow_host, clear=True)
            timed(signed(slow_host), hello, env)
            requests = len(proxy_log(slow_host))
            slow_wall = median(lambda: timed(signed(slow_host), hello, env))
            rtt = 2 * LATENCY_MS / 1000
            trips = (slow_wall - loopback) / rtt
            print(f"added latency {LATENCY_MS} ms each way (round trip {2 * LATENCY_MS} ms), median of {RUNS}")
            print(f"1. unsigned {platforms} onto a 2-platform base, nothing changed: "
                  f"gantry {g:.2f}s, ko {k:.2f}s, gantry/ko {g / k:.2f}")
            print(f"2. signed 3-platform rebuild: {slow_wall:.2f}s at the latency, {loopback:.2f}s on loopback, "
                  f"{trips:.1f} effective sequential round trips")
            print(f"3. requests in one signed 3-platform rebuild, counted at the proxy: {requests}")
            print(json.dumps({"gantry": g, "ko": k, "ratio": g / k, "signed_slow": slow_wall,
                              "signed_loopback": loopback, "round_trips": trips, "requests": requests}))
        finally:
            slow.kill()
            registry.kill()


if __name__ == "__main__":
    main()
