#!/usr/bin/env python3
"""gantry against ko and bare `go build`, into the same local registry.

For examples/hello and examples/with-deps, for linux/amd64,linux/arm64, with a warm Go
cache and the same base image: the median wall time of `gantry build`, `ko build`, and
the two `go build`s run in parallel, over RUNS runs each, with nothing changed and with
a line added to main.go before every run. Then a real program, ko v0.18.0
itself (hundreds of packages, a binary of tens of MB, from the Go module proxy), with one
source file of its main package changed before every run (so Go compiles and links
again), and with nothing changed. Then gantry's peak memory when
it packages and pushes a 50 MB binary (with `go` replaced by a copy of a prebuilt binary,
so the figure is gantry's own and not the Go linker's).

Run through bench/run, which installs what it needs.
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = os.path.join(ROOT, "target", "release", "gantry")
PLATFORMS = "linux/amd64,linux/arm64"
RUNS = int(os.environ.get("RUNS", "5"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(tmp):
    port = free_port()
    cfg = os.path.join(tmp, "registry.yml")
    with open(cfg, "w") as f:
        f.write(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {tmp}/data\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
    proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=1)
            return proc, host
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("docker-registry did not start")


def timed(cmd, cwd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_of(fn):
    return statistics.median(fn() for _ in range(RUNS))


def paired(edit, gantry, ko, go):
    """RUNS rounds of gantry, ko and go, each after `edit`, in turn, so that a machine
    whose speed drifts slows all three alike. Returns the median times and the median
    of each round's gantry/ko and gantry/go ratios."""
    rounds = []
    for _ in range(RUNS):
        times = []
        for fn in (gantry, ko, go):
            edit()
            times.append(fn())
        rounds.append(times)
    g, k, b = (statistics.median(r[i] for r in rounds) for i in range(3))
    to_ko = statistics.median(r[0] / r[1] for r in rounds)
    to_go = statistics.median(r[0] / r[2] for r in rounds)
    return g, k, b, to_ko, to_go


def go_builds_in_parallel(example, out):
    start = time.perf_counter()
    procs = []
    for platform in PLATFORMS.split(","):
        goos, goarch = platform.split("/")
        env = dict(os.environ, GOOS=goos, GOARCH=goarch, CGO_ENABLED="0")
        procs.append(subprocess.Popen(["go", "build", "-trimpath", "-o", os.path.join(out, goarch), "."], cwd=example, env=env))
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"go build failed in {example}")
    return time.perf_counter() - start


def real_program(tmp, host, base):
    """ko v0.18.0 built by gantry, by ko, and by two parallel `go build`s: one file of
    its main package changed before each run, then nothing changed."""
    info = json.loads(subprocess.run(["go", "mod", "download", "-json", "github.com/google/ko@v0.18.0"],
                                     check=True, capture_output=True, text=True).stdout)
    module = os.path.join(tmp, "kosrc")
    shutil.copytree(info["Dir"], module)
    for root, dirs, files in os.walk(module):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
    src = os.path.join(tmp, "real")
    os.makedirs(src)
    for cmd in (["go", "mod", "init", "example.com/real"],
                ["go", "mod", "edit", "-require", "github.com/google/ko@v0.18.0",
                 "-replace", f"github.com/google/ko={module}"],
                ["go", "mod", "tidy"]):
        subprocess.run(cmd, cwd=src, check=True, capture_output=True)
    with open(os.path.join(src, "tools.go"), "w") as f:
        f.write('//go:build tools\n\npackage tools\n\nimport _ "github.com/google/ko"\n')
    subprocess.run(["go", "mod", "tidy"], cwd=src, check=True, capture_output=True)
    pkg = "github.com/google/ko"
    packages = len(subprocess.run(["go", "list", "-deps", pkg], cwd=src, check=True,
                                  capture_output=True, text=True).stdout.split())
    edits = iter(range(1_000_000))

    def change():
        with open(os.path.join(module, "main.go"), "a") as f:
            f.write(f"\nvar benchEdit{next(edits)} = 1\n")

    gantry_cmd = [GANTRY, "build", "--repo", f"{host}/gantry-real", "--platform", PLATFORMS, "--base", base,
                  "--sbom", "none", "--no-provenance", pkg]
    ko_env = dict(os.environ, KO_DOCKER_REPO=f"{host}/ko-real", KO_DEFAULTBASEIMAGE=base)
    ko_cmd = ["ko", "build", "--bare", "--insecure-registry", f"--platform={PLATFORMS}", "--sbom=none", pkg]

    def go_fresh():
        out = tempfile.mkdtemp(dir=tmp)
        start = time.perf_counter()
        procs = []
        for platform in PLATFORMS.split(","):
            goos, goarch = platform.split("/")
            env = dict(os.environ, GOOS=goos, GOARCH=goarch, CGO_ENABLED="0")
            procs.append(subprocess.Popen(["go", "build", "-trimpath", "-o", os.path.join(out, goarch), pkg],
                                          cwd=src, env=env))
        if any(p.wait() != 0 for p in procs):
            sys.exit("go build of ko failed")
        return time.perf_counter() - start

    go_fresh()  # warms the Go cache for every tool
    timed(gantry_cmd, src)
    timed(ko_cmd, src, ko_env)

    changed = paired(change, lambda: timed(gantry_cmd, src), lambda: timed(ko_cmd, src, ko_env), go_fresh)
    same_g = median_of(lambda: timed(gantry_cmd, src))
    same_k = median_of(lambda: timed(ko_cmd, src, ko_env))
    binary = os.path.join(tmp, "ko-amd64")
    subprocess.run(["go", "build", "-trimpath", "-o", binary, pkg], cwd=src, check=True,
                   env=dict(os.environ, GOOS="linux", GOARCH="amd64", CGO_ENABLED="0"))
    return packages, os.path.getsize(binary), changed, same_g, same_k


def peak_memory(tmp, host):
    """gantry's max RSS packaging and pushing a ~50 MB binary."""
    src = os.path.join(tmp, "big")
    os.makedirs(src)
    with open(os.path.join(src, "go.mod"), "w") as f:
        f.write("module example.com/big\n\ngo 1.21\n")
    with open(os.path.join(src, "main.go"), "w") as f:
        f.write('package main\n\nimport (\n\t_ "embed"\n\t"fmt"\n)\n\n//go:embed blob.bin\nvar blob []byte\n\n'
                'func main() { fmt.Println(len(blob)) }\n')
    with open(os.path.join(src, "blob.bin"), "wb") as f:
        f.write(os.urandom(48 * 1024 * 1024))
    prebuilt = os.path.join(tmp, "big.bin")
    subprocess.run(["go", "build", "-trimpath", "-o", prebuilt, "."], cwd=src, check=True,
                   env=dict(os.environ, CGO_ENABLED="0"))
    size = os.path.getsize(prebuilt)
    # A stand-in `go` that answers `env GOVERSION` and `list` like go, and "builds" by copying.
    shim = os.path.join(tmp, "go-shim")
    real_go = shutil.which("go")
    with open(shim, "w") as f:
        f.write(f"""#!/bin/sh
if [ "$1" = build ]; then
  while [ "$1" != -o ]; do shift; done
  exec cp {prebuilt} "$2"
fi
exec {real_go} "$@"
""")
    os.chmod(shim, 0o755)
    env = dict(os.environ, GANTRY_GO=shim)
    out = subprocess.run(["/usr/bin/time", "-v", GANTRY, "build", "--repo", f"{host}/big", "--platform", "linux/amd64",
                          "--base", "scratch"], cwd=src, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"gantry failed on the big binary:\n{out.stderr}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    return size, rss_kb


def main():
    for tool in ["docker-registry", "ko", "go", "/usr/bin/time"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run bench/run, which installs it")
    with tempfile.TemporaryDirectory() as tmp:
        proc, host = start_registry(tmp)
        try:
            # One base image for both tools, built from scratch by gantry.
            base = f"{host}/base:v1"
            subprocess.run([GANTRY, "build", "--repo", f"{host}/base", "--tag", "v1", "--platform", PLATFORMS,
                            "--base", "scratch"], cwd=os.path.join(ROOT, "examples", "hello"), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rows = []
            for example in ["hello", "with-deps"]:
                # A copy, so that the "one file changed" runs can edit it.
                ex = os.path.join(tmp, "src-" + example)
                shutil.copytree(os.path.join(ROOT, "examples", example), ex)
                out = os.path.join(tmp, "go-" + example)
                os.makedirs(out)
                go_builds_in_parallel(ex, out)  # warm the Go cache for every tool
                gantry_cmd = [GANTRY, "build", "--repo", f"{host}/gantry-{example}", "--platform", PLATFORMS,
                              "--base", base, "--sbom", "none", "--no-provenance", "."]
                ko_env = dict(os.environ, KO_DOCKER_REPO=f"{host}/ko-{example}", KO_DEFAULTBASEIMAGE=base)
                ko_cmd = ["ko", "build", "--bare", "--insecure-registry", f"--platform={PLATFORMS}", "--sbom=none", "."]
                timed(gantry_cmd, ex)
                timed(ko_cmd, ex, ko_env)
                g = median_of(lambda: timed(gantry_cmd, ex))
                k = median_of(lambda: timed(ko_cmd, ex, ko_env))
                b = median_of(lambda: go_builds_in_parallel(ex, out))
                # Into a new directory each time, as a CI job without gantry's cache does:
                # go must link again.
                f = median_of(lambda: go_builds_in_parallel(ex, tempfile.mkdtemp(dir=tmp)))
                edits = iter(range(1_000_000))

                def edit():
                    with open(os.path.join(ex, "main.go"), "a") as src:
                        src.write(f"\n// bench edit {next(edits)}\n")

                edited = paired(edit, lambda: timed(gantry_cmd, ex), lambda: timed(ko_cmd, ex, ko_env),
                                lambda: go_builds_in_parallel(ex, tempfile.mkdtemp(dir=tmp)))
                rows.append((example, g, k, b, f, edited))
            print(f"median of {RUNS} runs, warm Go cache, {PLATFORMS}, local registry {host}")
            print("go build (kept): outputs kept from the last run, so go may skip the link, as gantry's cache lets it")
            print("go build (fresh): outputs into a new directory, so go links every time")
            print(f"{'example':<10} {'gantry':>8} {'ko':>8} {'gantry/ko':>10} {'go (kept)':>10} {'overhead':>9} {'go (fresh)':>11} {'overhead':>9}")
            for example, g, k, b, f, _ in rows:
                print(f"{example:<10} {g:>7.2f}s {k:>7.2f}s {g / k:>10.2f} {b:>9.2f}s {100 * (g - b) / b:>8.1f}% {f:>10.2f}s {100 * (g - f) / f:>8.1f}%")
            print("one line added to a file of the main package before every run (go compiles and links again);")
            print("gantry, ko and the two go builds (fresh) in turn, ratios the median of each round's:")
            for example, *_, (gc, kc, fc, to_ko, to_go) in rows:
                print(f"  {example:<10} gantry {gc:.2f}s, ko {kc:.2f}s, go {fc:.2f}s; "
                      f"gantry/ko {to_ko:.2f}, gantry/go {to_go:.2f}")
            packages, real_size, (g, k, b, to_ko, to_go), same_g, same_k = real_program(tmp, host, base)
            print(f"  ko v0.18.0 ({packages} packages, {real_size / 1e6:.1f} MB for linux/amd64): "
                  f"gantry {g:.2f}s, ko {k:.2f}s, go {b:.2f}s; gantry/ko {to_ko:.2f}, gantry/go {to_go:.2f}")
            print(f"ko v0.18.0, nothing changed: gantry {same_g:.2f}s, ko {same_k:.2f}s; gantry/ko {same_g / same_k:.2f}")
            size, rss = peak_memory(tmp, host)
            print(f"peak RSS of gantry packaging and pushing a {size / 1e6:.1f} MB binary: {rss / 1024:.1f} MiB")
            print(json.dumps({"rows": rows, "real": [packages, real_size, g, k, b, to_ko, to_go, same_g, same_k],
                              "big_binary_bytes": size, "peak_rss_kib": rss}))
        finally:
            proc.kill()


if __name__ == "__main__":
    main()
