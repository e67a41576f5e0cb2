#!/usr/bin/env python3
"""include_cycles.py: report include cycles between modules.

A module is a .c/.h pair (api/auth.c and api/auth.h are the module
api/auth); a header X_internal.h belongs to module X. Module A depends on module B when A's .c or .h includes B's .h.
Prints every cycle found among the modules of the given folders (default:
every component) and exits 1 if there is one, 0 if none.

    scripts/include_cycles.py api          # just api/
    scripts/include_cycles.py              # every component
"""
import os
import re
import sys

COMPONENTS = ["common", "crypto", "store", "vault", "keeper", "api",
              "server", "cli"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(name):
    return name[:-len("_internal")] if name.endswith("_internal") else name


def modules(root, folders):
    deps = {}
    for folder in folders:
        path = os.path.join(root, folder)
        if not os.path.isdir(path):
            continue
        for name in sorted(os.listdir(path)):
            base, ext = os.path.splitext(name)
            if ext not in (".c", ".h"):
                continue
            mod = module_of(folder + "/" + base)
            with open(os.path.join(path, name), encoding="utf-8") as f:
                text = f.read()
            for inc in INCLUDE.findall(text):
                dep = module_of(os.path.splitext(inc)[0])
                if dep != mod and dep.split("/")[0] in folders:
                    deps.setdefault(mod, set()).add(dep)
            deps.setdefault(mod, set())
    return deps


def cycles(deps):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folders = sys.argv[1:] or COMPONENTS
    deps = modules(root, folders)
    found = cycles(deps)
    for comp in found:
        print("cycle: " + " <-> ".join(comp))
    if not found:
        print("no include cycle among the modules of " + " ".join(folders))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
