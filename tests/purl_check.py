#!/usr/bin/env python3
"""Judges package URLs with packageurl-python (PyPI packageurl-python).

  purl_check.py FILE...   Every purl in these SPDX or CycloneDX JSON files must parse,
                          print back unchanged (canonical form) and pass the library's
                          validation. Prints "FILE<TAB>PURL" for each; exits 1 on any
                          failure, naming it.
  purl_check.py --golang  Reads "MODULE-PATH<TAB>VERSION" lines on stdin and prints the
                          canonical golang purl of each, as packageurl-python builds it:
                          what a test expects, made without gantry's code.

The golang type definition says namespace and name are lowercase, so --golang
lowercases them (packageurl-python only warns about it). The Go standard library has
no module path: it is `pkg:golang/stdlib`, as Go's vulnerability tools name it, so
the "namespace is required" finding is accepted for that one purl.
"""
import json
import sys

try:
    from packageurl import PackageURL
except ImportError:
    sys.exit("packageurl-python is not installed: pip install packageurl-python "
             "(scripts/test installs it)")


def golang_purl(path, version):
    namespace, _, name = path.rpartition("/")
    return PackageURL(type="golang", namespace=namespace.lower() or None,
                      name=name.lower(), version=version or None).to_string()


def purls_of(doc):
    """The purls an SPDX 2.x or CycloneDX JSON document gives."""
    if "spdxVersion" in doc:
        for package in doc.get("packages", []):
            for ref in package.get("externalRefs", []):
                if ref.get("referenceType") == "purl":
                    yield ref["referenceLocator"]
        return

    def components(items):
        for c in items:
            yield c
            yield from components(c.get("components", []))

    top = doc.get("metadata", {}).get("component")
    for c in components(([top] if top else []) + doc.get("components", [])):
        if "purl" in c:
            yield c["purl"]


def problems(purl):
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError as e:
        return [f"does not parse: {e}"]
    found = []
    canonical = parsed.to_string()
    if canonical != purl:
        found.append(f"not canonical: packageurl-python writes it {canonical}")
    stdlib = parsed.type == "golang" and not parsed.namespace and parsed.name == "stdlib"
    for message in PackageURL.validate_string(purl):
        if stdlib and "Namespace is required" in message.message:
            continue
        found.append(f"{message.severity.value}: {message.message}")
    return found


def main(args):
    if args == ["--golang"]:
        for line in sys.stdin:
            if line.strip():
                path, _, version = line.rstrip("\n").partition("\t")
                print(golang_purl(path, version))
        return 0
    if not args:
        sys.exit(__doc__)
    bad = 0
    for file in args:
        with open(file) as f:
            purls = list(purls_of(json.load(f)))
        if not purls:
            print(f"{file}: no purls", file=sys.stderr)
            bad += 1
        for purl in purls:
            for problem in problems(purl):
                print(f"{file}: {purl}: {problem}", file=sys.stderr)
                bad += 1
            print(f"{file}\t{purl}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
