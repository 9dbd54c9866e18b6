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
3. the requests that signed run sent, counted at the proxy;
4. the same for a signed push of changed images (a new SOURCE_DATE_EPOCH each run, so
   every digest is new and everything is uploaded and signed);
5. a real-size program, ko v0.18.0 itself (a ~30 MB binary from hundreds of packages,
   from the Go module cache), unsigned linux/amd64+arm64 onto the base: gantry against
   ko, first push into an empty repository and again with nothing changed;
6. that program rebuilt on a fresh runner (an empty gantry cache, so go links anew and
   the layers stream) when the registry has the images already, with uploads held to
   10 MiB/s between the proxy and the registry: gantry against ko (which has no cache,
   so this is its "nothing changed").

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


def throttle_uploads(host, rate):
    """Holds every upload's body to `rate` bytes a second at the proxy (0: no limit)."""
    faults = [{"method": method, "path": "/blobs/uploads/", "action": "throttle", "rate": rate, "times": 10_000}
              for method in ("PATCH", "PUT")] if rate else None
    req = urllib.request.Request(f"http://{host}/__proxy/faults", method="POST" if faults else "DELETE",
                                 data=json.dumps(faults).encode() if faults else None)
    urllib.request.urlopen(req).read()


def timed(cmd, cwd, env=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stderr}")
    return time.perf_counter() - start


def median(fn):
    return statistics.median(fn() for _ in range(RUNS))


def signed_figures(hello, host, slow_host, env, keys, changed):
    """Wall at the latency, wall on loopback, effective round trips, requests."""
    runs = iter(range(1_000_000, 2_000_000))

    def cmd(h):
        return [GANTRY, "build", "--repo", f"{h}/signed", "--platform", "linux/amd64,linux/arm64,wasi/wasm",
                "--base", "scratch", "--key", os.path.join(keys, "k.key"), "--no-tlog-upload", "."]

    def run(h):
        e = dict(env, SOURCE_DATE_EPOCH=str(next(runs))) if changed else env
        return timed(cmd(h), hello, e)

    run(host)
    run(slow_host)
    loopback = median(lambda: run(host))
    proxy_log(slow_host, clear=True)
    run(slow_host)
    requests = len(proxy_log(slow_host))
    slow_wall = median(lambda: run(slow_host))
    return slow_wall, loopback, (slow_wall - loopback) / (2 * LATENCY_MS / 1000), requests


def real_size(tmp, slow_host, base, platforms):
    """gantry and ko building ko itself: first push and nothing changed."""
    src = os.path.join(tmp, "real")
    os.makedirs(src)
    subprocess.run(["go", "mod", "init", "example.com/real"], cwd=src, check=True, capture_output=True)
    subprocess.run(["go", "get", "github.com/google/ko@v0.18.0"], cwd=src, check=True, capture_output=True)
    pkg = "github.com/google/ko"
    count = subprocess.run(["go", "list", "-deps", pkg], cwd=src, check=True, capture_output=True, text=True)
    packages = len(count.stdout.split())
    repos = iter(range(1_000_000))

    def gantry(repo):
        return [GANTRY, "build", "--repo", f"{slow_host}/{repo}", "--platform", platforms, "--base", base,
                "--sbom", "none", "--no-provenance", "--sign", "none", pkg]

    def ko(repo):
        env = dict(os.environ, KO_DOCKER_REPO=f"{slow_host}/{repo}", KO_DEFAULTBASEIMAGE=base)
        cmd = ["ko", "build", "--bare", "--insecure-registry", f"--platform={platforms}", "--sbom=none", pkg]
        return timed(cmd, src, env)

    timed(gantry("g-warm"), src)  # warms the Go build cache for both tools
    first_g = median(lambda: timed(gantry(f"g-{next(repos)}"), src))
    first_k = median(lambda: ko(f"k-{next(repos)}"))
    same_g = median(lambda: timed(gantry("g-warm"), src))
    ko("k-same")
    same_k = median(lambda: ko("k-same"))

    def fresh_runner():
        with tempfile.TemporaryDirectory(dir=tmp) as cache:
            return timed(gantry("g-warm"), src, dict(os.environ, GANTRY_CACHE_DIR=cache))

    throttle_uploads(slow_host, 10 << 20)
    fresh_g = median(fresh_runner)
    fresh_k = median(lambda: ko("k-same"))
    throttle_uploads(slow_host, 0)
    out = os.path.join(tmp, "ko-bin")
    subprocess.run(["go", "build", "-trimpath", "-o", out, pkg], cwd=src, check=True,
                   env=dict(os.environ, CGO_ENABLED="0"))
    return packages, os.path.getsize(out), first_g, first_k, same_g, same_k, fresh_g, fresh_k


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
                          "--base", base, "--sbom", "none", "--no-provenance", "--sign", "none", "."]
            ko_env = dict(os.environ, KO_DOCKER_REPO=f"{slow_host}/ko", KO_DEFAULTBASEIMAGE=base)
            ko_cmd = ["ko", "build", "--bare", "--insecure-registry", f"--platform={platforms}", "--sbom=none", "."]
            timed(gantry_cmd, hello)
            timed(ko_cmd, hello, ko_env)
            g = median(lambda: timed(gantry_cmd, hello))
            k = median(lambda: timed(ko_cmd, hello, ko_env))

            keys = os.path.join(tmp, "keys")
            os.makedirs(keys)
            env = dict(os.environ, COSIGN_PASSWORD=PASSWORD)
            subprocess.run([GANTRY, "keygen", "--output-prefix", os.path.join(keys, "k")], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rebuild = signed_figures(hello, host, slow_host, env, keys, changed=False)
            changed = signed_figures(hello, host, slow_host, env, keys, changed=True)
            packages, size, first_g, first_k, same_g, same_k, fresh_g, fresh_k = real_size(
                tmp, slow_host, base, platforms)

            print(f"added latency {LATENCY_MS} ms each way (round trip {2 * LATENCY_MS} ms), median of {RUNS}")
            print(f"1. unsigned {platforms} of examples/hello onto a 2-platform base, nothing changed: "
                  f"gantry {g:.2f}s, ko {k:.2f}s, gantry/ko {g / k:.2f}")
            for n, what, (slow_wall, loopback, trips, requests) in [
                (2, "signed 3-platform rebuild, nothing changed", rebuild),
                (4, "signed 3-platform push of changed images", changed),
            ]:
                print(f"{n}. {what}: {slow_wall:.2f}s at the latency, {loopback:.2f}s on loopback, "
                      f"{trips:.1f} effective sequential round trips, {requests} requests at the proxy")
            print(f"5. real size: github.com/google/ko, {packages} packages, {size / 1e6:.1f} MB linux/amd64 "
                  f"binary, unsigned {platforms} at the latency: first push gantry {first_g:.2f}s, ko "
                  f"{first_k:.2f}s ({first_g / first_k:.2f}); nothing changed gantry {same_g:.2f}s, ko "
                  f"{same_k:.2f}s ({same_g / same_k:.2f})")
            print(f"6. the same rebuilt on a fresh runner, the registry having it, uploads at 10 MiB/s: gantry "
                  f"{fresh_g:.2f}s, ko {fresh_k:.2f}s ({fresh_g / fresh_k:.2f})")
            print(json.dumps({"gantry": g, "ko": k, "ratio": g / k, "rebuild": rebuild, "changed": changed,
                              "real": {"packages": packages, "bytes": size, "first": [first_g, first_k],
                                       "same": [same_g, same_k], "fresh": [fresh_g, fresh_k]}}))
        finally:
            slow.kill()
            registry.kill()


if __name__ == "__main__":
    main()
