#!/usr/bin/env python3
"""No spec enum is compared as a string outside the parser.

Every Gateway API enum value gwcore knows is spelled once, in
gwcore/src/values.rs (the `Variant = "Text"` lines of its `spec_enum!`
invocations). The parser (values.rs, validate.rs, which checks what the
CRDs accept) may use those spellings; past it, the model carries enums.
This script lists every other place in the library crates' sources where
one of those spellings appears as a string literal outside comments and
test modules, and exits 1 if there is any. A value of another API that
happens to share a spelling (core/v1 Service port protocols "TCP" and
"UDP") is marked on its line with the comment `// not a Gateway API value`.

    python3 .ci/spec_strings.py
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VALUES = ROOT / "gwcore/src/values.rs"
PARSER = {VALUES, ROOT / "gwcore/src/validate.rs"}
# Library sources past the parser. Test helpers (gwcore/src/testing) build
# manifests and are not part of the decision path.
SOURCES = [
    ROOT / "gwcore/src",
    ROOT / "gwcore-proxy/src",
    ROOT / "gwcore-k8s/src",
]
SKIP_DIRS = {ROOT / "gwcore/src/testing"}


def spellings():
    text = VALUES.read_text()
    return sorted(set(re.findall(r'^\s+[A-Z][A-Za-z]* = "([^"]+)",', text, re.M)))


MARK = "// not a Gateway API value"


def code_lines(path):
    """Yields (number, line) of code: no comments, no #[cfg(test)] modules,
    no line marked with MARK."""
    depth_at_test = None
    depth = 0
    pending_test = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#[cfg(test)]"):
            pending_test = True
        code = line.split("//", 1)[0] if not stripped.startswith("//") else ""
        opens, closes = code.count("{"), code.count("}")
        if pending_test and opens:
            depth_at_test = depth
            pending_test = False
        if depth_at_test is None and MARK not in line:
            yield n, code
        depth += opens - closes
        if depth_at_test is not None and depth <= depth_at_test:
            depth_at_test = None


def main():
    words = spellings()
    pattern = re.compile('"(' + "|".join(re.escape(w) for w in words) + ')"')
    found = []
    for base in SOURCES:
        for path in sorted(base.rglob("*.rs")):
            if (
                path in PARSER
                or path.name == "tests.rs"
                or any(d in path.parents for d in SKIP_DIRS)
            ):
                continue
            for n, code in code_lines(path):
                for m in pattern.finditer(code):
                    found.append(f"{path.relative_to(ROOT)}:{n}: \"{m.group(1)}\": {code.strip()}")
    for f in found:
        print(f)
    print(f"{len(words)} spec enum spellings; {len(found)} string uses outside the parser")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
