"""Validates driver output against the published JSON Schemas (schemas/).

    validate_schema.py SCHEMA_DIR NAME [--lines] [--strict] < OUTPUT

NAME is a schema file in SCHEMA_DIR without `.schema.json` (e.g.
`run-output`). OUTPUT is one JSON document, or with --lines one per line
(NDJSON). Every schema in SCHEMA_DIR is loaded, so they may refer to each
other by `$id`.

--strict closes the published schemas, which are open to additions: an
object with `properties` gets `unevaluatedProperties: false`, and an `allOf`
of `if`/`then` dispatching on a `const` tag accepts only those tags (each
tag's own schema being closed). So a
field or an event kind that driver prints but the schemas do not describe
fails the tests, while consumers may still ignore what they do not know.

Exits 0 when everything is valid, else 1 with each error on stderr.
"""

import json
import pathlib
import sys

import jsonschema
import referencing


def closed(schema):
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    # An `if` only tests; closing it would make it fail.
    s = {k: v if k == "if" else closed(v) for k, v in schema.items()}
    tags = {}
    for branch in s.get("allOf", []):
        props = branch.get("if", {}).get("properties", {}) if isinstance(branch, dict) else {}
        for key, cond in props.items():
            if "const" in cond:
                tags.setdefault(key, []).append(cond["const"])
    for key, values in tags.items():
        prop = dict(s.setdefault("properties", {}).get(key, {}))
        prop["enum"] = values
        s["properties"][key] = prop
    # A dispatching schema is closed by the (closed) schema of each tag.
    if not tags and "properties" in s:
        s.setdefault("unevaluatedProperties", False)
    return s


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder, name = pathlib.Path(args[0]), args[1]
    strict = "--strict" in argv
    schemas = {}
    for path in sorted(folder.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        schemas[path.name.removesuffix(".schema.json")] = closed(schema) if strict else schema
    if name not in schemas:
        print(f"no schema {name} in {folder}: {sorted(schemas)}", file=sys.stderr)
        return 2
    registry = referencing.Registry().with_resources(
        (s["$id"], referencing.Resource.from_contents(s)) for s in schemas.values()
    )
    validator = jsonschema.Draft202012Validator(
        schemas[name],
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    text = sys.stdin.read()
    docs = (
        [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
        if "--lines" in argv
        else [(1, text)]
    )
    if not docs:
        print("nothing to validate (empty output)", file=sys.stderr)
        return 1
    failed = 0
    for line, doc in docs:
        try:
            value = json.loads(doc)
        except json.JSONDecodeError as e:
            print(f"line {line}: not JSON ({e}): {doc[:200]}", file=sys.stderr)
            failed += 1
            continue
        for err in sorted(validator.iter_errors(value), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in err.absolute_path) or "(top)"
            print(f"line {line}: {where}: {err.message}: {doc[:300]}", file=sys.stderr)
            failed += 1
    print(f"{len(docs)} document(s), {failed} error(s)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
