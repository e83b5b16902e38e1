#!/usr/bin/env python3
"""Import graph of a crate's files from `use crate::...` (and `crate::x::` paths in code),
with Tarjan's strongly connected components: a circle is an SCC of more than one file."""
import os, re, sys
root = sys.argv[1]  # e.g. query-api/src
# The largest circle allowed: two files that import each other (a module and its helper) are
# a local choice; a circle through three or more files is a tangle no one owns.
largest = int(sys.argv[2]) if len(sys.argv) > 2 else 1
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            mod = rel[:-3].replace(os.sep, '::')
            mod = re.sub(r'(::)?mod$', '', mod)
            # A binary beside a library is another crate root (it uses query_api::, not
            # crate::); without a library, main.rs is the root the modules hang from.
            if mod == 'main':
                if os.path.exists(os.path.join(root, 'lib.rs')): continue
                mod = ''
            if mod == 'lib': mod = ''
            files[mod] = rel
def resolve(path):
    # longest module prefix of `path` that is a file
    parts = path.split('::')
    for n in range(len(parts), -1, -1):
        m = '::'.join(parts[:n])
        if m in files: return m
    return ''
edges = {m: set() for m in files}
for m, rel in files.items():
    src = open(os.path.join(root, rel)).read()
    src = re.sub(r'//.*', '', src)
    # skip test modules: they are not part of the library's dependency structure
    src = src.split('#[cfg(test)]')[0]
    for u in re.findall(r'\bcrate::([A-Za-z_][\w:]*(?:::\{[^;]*\})?)', src):
        base = u.split('::{')[0]
        heads = [base]
        if '::{' in u:
            inner = u.split('::{', 1)[1].rstrip('}')
            heads = [base + '::' + x.strip().split(' ')[0].split('::{')[0] for x in inner.split(',') if x.strip()]
        for h in heads:
            t = resolve(h.rstrip(':'))
            if t != m: edges[m].add(t)
    # a child module by its bare name (`routes::router()` in lib.rs, `projects::router()`)
    for u in re.findall(r'(?<![:\w])([a-z_]\w*)::', src):
        child = (m + '::' + u).strip(':')
        if child in files and child != m: edges[m].add(child)
    # `super::x` from a file
    for u in re.findall(r'\bsuper::([A-Za-z_]\w*)', src):
        parent = m.rsplit('::', 1)[0] if '::' in m else ''
        if rel.endswith('mod.rs'):
            parent = m.rsplit('::', 1)[0] if '::' in m else ''
        t = resolve((parent + '::' + u).strip(':'))
        if t != m: edges[m].add(t)
index = {}; low = {}; stack = []; on = set(); sccs = []; c = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = c[0]; c[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in edges:
    if v not in index: strong(v)
circles = [s for s in sccs if len(s) > largest]
if "-v" in sys.argv:
    for m in sorted(edges):
        print(f"{files[m]:28} -> {', '.join(sorted(files[t] for t in edges[m]))}")
if circles:
    for s in circles: print("CIRCLE:", ' <-> '.join(files[x] for x in s))
    sys.exit(1)
print(f"{root}: no import circle spans more than {largest} file(s); largest: {max(map(len, sccs), default=0)}")
