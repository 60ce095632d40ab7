# SPDX-License-Identifier: MIT
"""A strict parser for the Prometheus text exposition format, version 0.0.4.

It refuses what Prometheus' own parser refuses and more: anything the format does not
allow, a family split in two, HELP or TYPE after the family's first sample or given twice,
a series given twice, reserved or repeated label names, escapes other than the three the
format knows, invalid UTF-8, a missing final newline, and histograms whose buckets are not
cumulative, lack +Inf or disagree with _count. With lint=True it also wants HELP and TYPE
for every family, non-negative counters named *_total, and no timestamps.

Use it as a module (parse(text) -> {family name: Family}, value(...)) or from the command
line: `curl -s http://127.0.0.1:9090/metrics | python3 promtext.py --lint -` prints a
summary and exits 0, or prints "LINE: what is wrong" and exits 1.

Python 3 standard library only."""

import math
import re
import sys

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's strconv.ParseFloat as Prometheus uses it, minus hex floats and underscores.
FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
INT = re.compile(r"-?[0-9]+\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ParseError(ValueError):
    def __init__(self, line, msg):
        super().__init__("%d: %s" % (line, msg))
        self.line = line


class Family:
    def __init__(self, name):
        self.name = name
        self.type = None
        self.help = None
        self.samples = []  # (sample name, {label: value}, float value, line)

    def __repr__(self):
        return "Family(%s, %s, %d samples)" % (self.name, self.type, len(self.samples))


def parse_float(text, line, what):
    if text in ("NaN", "+Inf", "-Inf", "Inf", "+inf", "-inf", "inf", "nan"):
        if text not in ("NaN", "+Inf", "-Inf"):
            raise ParseError(line, "%s %r: write NaN, +Inf or -Inf" % (what, text))
        return float(text)
    if not FLOAT.match(text):
        raise ParseError(line, "%s %r is not a number" % (what, text))
    return float(text)


def unescape(text, line, quote_ok):
    """Undo the format's escapes: \\\\ and \\n, and \\" in label values. Nothing else."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                raise ParseError(line, "a backslash ends the text")
            n = text[i + 1]
            if n == "\\":
                out.append("\\")
            elif n == "n":
                out.append("\n")
            elif n == '"' and quote_ok:
                out.append('"')
            else:
                raise ParseError(line, "unknown escape \\%s" % n)
            i += 2
            continue
        if c == "\n":
            raise ParseError(line, "raw newline")
        out.append(c)
        i += 1
    return "".join(out)


def parse_labels(s, i, line):
    """Parse '{a="b",c="d"}' from s[i] == '{'; return (labels, index after '}')."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = LABEL_NAME.match(s, i)
        if not m:
            raise ParseError(line, "bad label name at column %d" % (i + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise ParseError(line, "label name %r is reserved" % name)
        if name in labels:
            raise ParseError(line, "label %r given twice" % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ParseError(line, "expected =\" after label %r" % name)
        i += 2
        start = i
        while i < len(s) and s[i] != '"':
            i += 2 if s[i] == "\\" else 1
        if i >= len(s):
            raise ParseError(line, "unterminated value of label %r" % name)
        labels[name] = unescape(s[start:i], line, True)
        i += 1
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] == "}":
            return labels, i + 1
        else:
            raise ParseError(line, "expected , or } after label %r" % name)


def family_of(sample_name, families, types):
    """The family a sample belongs to: a histogram's _bucket/_sum/_count or a summary's
    _sum/_count go to the declared family; anything else is its own family."""
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            t = types.get(base)
            if t == "histogram" or (t == "summary" and suffix != "_bucket"):
                return base
    return sample_name


def parse(text, lint=False):
    """Parse exposition <text> (str or bytes). Returns {family name: Family} in order of
    appearance; raises ParseError on the first problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ParseError(text[: e.start].count(b"\n") + 1, "invalid UTF-8") from None
    if text and not text.endswith("\n"):
        raise ParseError(text.count("\n") + 1, "the last line has no newline")
    families = {}
    types = {}
    closed = set()  # families whose lines have ended
    current = None
    series = set()

    def enter(name, line):
        nonlocal current
        if current != name:
            if name in closed:
                raise ParseError(line, "family %s continues after another began" % name)
            if current is not None:
                closed.add(current)
            current = name
        return families.setdefault(name, Family(name))

    for n, raw in enumerate(text.split("\n")[:-1] if text else [], start=1):
        if raw == "":
            continue
        if "\r" in raw:
            raise ParseError(n, "carriage return")
        if raw.startswith("#"):
            parts = raw.split(" ", 3) if raw.startswith("# ") else [raw]
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                kind, name = parts[1], parts[2]
                rest = parts[3] if len(parts) > 3 else ""
                if not METRIC_NAME.fullmatch(name):
                    raise ParseError(n, "bad metric name %r" % name)
                fam = enter(name, n)
                if fam.samples:
                    raise ParseError(n, "%s for %s after its samples" % (kind, name))
                if kind == "HELP":
                    if fam.help is not None:
                        raise ParseError(n, "second HELP for %s" % name)
                    fam.help = unescape(rest, n, False)
                else:
                    if fam.type is not None:
                        raise ParseError(n, "second TYPE for %s" % name)
                    if rest not in TYPES:
                        raise ParseError(n, "unknown type %r" % rest)
                    fam.type = rest
                    types[name] = rest
            continue  # any other comment
        m = METRIC_NAME.match(raw)
        if not m:
            raise ParseError(n, "a sample must start with a metric name")
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(raw) and raw[i] == "{":
            labels, i = parse_labels(raw, i, n)
        if i >= len(raw) or raw[i] != " ":
            raise ParseError(n, "expected one space before the value")
        fields = raw[i + 1:].split(" ")
        if len(fields) not in (1, 2) or "" in fields:
            raise ParseError(n, "expected VALUE [TIMESTAMP] after the labels, single spaces")
        value = parse_float(fields[0], n, "value")
        if len(fields) == 2:
            if lint:
                raise ParseError(n, "timestamp given (lint)")
            if not INT.match(fields[1]):
                raise ParseError(n, "timestamp %r is not an integer" % fields[1])
        fam = enter(family_of(name, families, types), n)
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            raise ParseError(n, "series given twice: %s" % raw.rsplit(" ", len(fields))[0])
        series.add(key)
        t = fam.type or "untyped"
        if t == "histogram" and name == fam.name:
            raise ParseError(n, "histogram %s: a bare sample (want _bucket, _sum, _count)"
                             % name)
        if t == "histogram" and name.endswith("_bucket"):
            if "le" not in labels:
                raise ParseError(n, "bucket without le")
            parse_float(labels["le"], n, "le")
        if t in ("counter", "gauge", "untyped") and name != fam.name:
            raise ParseError(n, "sample %s is not in family %s" % (name, fam.name))
        if lint and t == "counter" and (value < 0 or math.isnan(value)):
            raise ParseError(n, "counter %s is %s (lint)" % (name, fields[0]))
        fam.samples.append((name, labels, value, n))

    for fam in families.values():
        if fam.type == "histogram":
            check_histogram(fam)
        if lint:
            line = fam.samples[0][3] if fam.samples else 0
            if fam.help is None or fam.type is None:
                raise ParseError(line, "%s lacks HELP or TYPE (lint)" % fam.name)
            if fam.type == "counter" and not fam.name.endswith("_total"):
                raise ParseError(line, "counter %s is not named *_total (lint)" % fam.name)
    return families


def check_histogram(fam):
    groups = {}
    for name, labels, value, line in fam.samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None, "line": line})
        if name.endswith("_bucket"):
            g["buckets"].append((float(labels["le"]), value, line))
        elif name.endswith("_sum"):
            g["sum"] = value
        else:
            g["count"] = value
    for rest, g in groups.items():
        where = "%s%s" % (fam.name, dict(rest))
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise ParseError(g["line"], "%s: no le=\"+Inf\" bucket last" % where)
        for (le0, v0, _), (le1, v1, line) in zip(b, b[1:]):
            if le1 <= le0:
                raise ParseError(line, "%s: le not increasing" % where)
            if v1 < v0:
                raise ParseError(line, "%s: buckets not cumulative" % where)
        if g["count"] is None or g["sum"] is None:
            raise ParseError(g["line"], "%s: _sum or _count missing" % where)
        if g["count"] != b[-1][1]:
            raise ParseError(g["line"], "%s: _count %g != +Inf bucket %g"
                             % (where, g["count"], b[-1][1]))


def value(families, name, **labels):
    """The value of the one sample <name> with exactly <labels>; KeyError if none."""
    for fam in families.values():
        for sname, slabels, v, _ in fam.samples:
            if sname == name and slabels == labels:
                return v
    raise KeyError("%s%s" % (name, labels))


def main(argv):
    lint = "--lint" in argv
    args = [a for a in argv if a != "--lint"]
    if len(args) != 1:
        print("usage: promtext.py [--lint] FILE|-", file=sys.stderr)
        return 2
    data = sys.stdin.buffer.read() if args[0] == "-" else open(args[0], "rb").read()
    try:
        families = parse(data, lint=lint)
    except ParseError as e:
        print("%s:%s" % (args[0], e), file=sys.stderr)
        return 1
    n = sum(len(f.samples) for f in families.values())
    print("%s: ok, %d families, %d samples" % (args[0], len(families), n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
