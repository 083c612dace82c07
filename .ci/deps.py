#!/usr/bin/env python3
"""The crate's module graph from `crate::` paths outside tests and comments:
prints each top-level module's dependencies and exits 1 on a cycle.
ARCHITECTURE.md lists the order; run this after moving code."""
import glob
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
# Names re-exported at the crate root, and the module that defines them.
ROOT_NAMES = {
    "TokenCache": "cache", "TokenEndpoint": "endpoint", "ClientAuth": "request",
    "TokenRequest": "request", "TokenUrl": "request", "SecretString": "secret",
    "Token": "token", "Error": "error", "ErrorKind": "error", "OAuth2Layer": "layer",
    "OAuth2Service": "layer", "HttpClient": "transport", "HttpTransport": "transport",
}
SKIP = {"lib", "docs", "testdata", "test_support"}


def code(path):
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]\nmod tests")
    return re.sub(r"//[^\n]*", "", text if cut < 0 else text[:cut])


files = glob.glob(os.path.join(ROOT, "**", "*.rs"), recursive=True)
top = lambda f: os.path.relpath(f, ROOT).split(os.sep)[0].removesuffix(".rs")
modules = {top(f) for f in files} - SKIP
graph = {m: set() for m in modules}
for f in files:
    m = top(f)
    if m in SKIP:
        continue
    text = code(f)
    names = re.findall(r"crate::([A-Za-z_]+)", text)
    for group in re.findall(r"crate::\{([^}]*)\}", text):
        names += re.findall(r"\b([A-Za-z_]+)\b", group)
    for name in names:
        dep = ROOT_NAMES.get(name, name)
        if dep in modules and dep != m:
            graph[m].add(dep)

for m in sorted(graph):
    print(f"{m}: {', '.join(sorted(graph[m]))}")
state, stack, cycles = {}, [], []


def visit(u):
    state[u] = 1
    stack.append(u)
    for v in sorted(graph[u]):
        if state.get(v) == 1:
            cycles.append(stack[stack.index(v):] + [v])
        elif v not in state:
            visit(v)
    stack.pop()
    state[u] = 2


for m in sorted(graph):
    if m not in state:
        visit(m)
for c in cycles:
    print("cycle: " + " -> ".join(c), file=sys.stderr)
sys.exit(1 if cycles else 0)
