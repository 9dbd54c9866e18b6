#!/usr/bin/env python3
"""Validates CycloneDX JSON files against the 1.6 schema (cyclonedx-python-lib), then
checks what the schema cannot: every bom-ref is unique, every reference in the
dependency graph names a component of the document, and every component has its own
entry in the graph and is reached from the described component."""
import json
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator


def graph_problems(doc):
    root = doc.get("metadata", {}).get("component", {})
    components = [root] + doc.get("components", [])
    refs = [c.get("bom-ref") for c in components]
    found = [f"duplicate bom-ref {r}" for r in sorted(set(refs)) if refs.count(r) > 1]
    entries = {d["ref"]: d.get("dependsOn", []) for d in doc.get("dependencies", [])}
    for ref, on in entries.items():
        for r in [ref] + on:
            if r not in refs:
                found.append(f"dependency graph names {r}, which is no component")
    for r in refs:
        if r not in entries:
            found.append(f"{r} has no entry in the dependency graph")
    reached, todo = set(), [root.get("bom-ref")]
    while todo:
        r = todo.pop()
        if r not in reached:
            reached.add(r)
            todo.extend(entries.get(r, []))
    found += [f"{r} is not reached from {root.get('bom-ref')}" for r in refs if r not in reached]
    return found


v = JsonStrictValidator(SchemaVersion.V1_6)
bad = 0
for f in sys.argv[1:]:
    text = open(f).read()
    err = v.validate_str(text)
    if err:
        print(f"INVALID {f}: {err}"); bad += 1
        continue
    problems = graph_problems(json.loads(text))
    if problems:
        print(f"INVALID {f}: " + "; ".join(problems)); bad += 1
    else:
        print(f"valid {f}")
sys.exit(1 if bad else 0)
