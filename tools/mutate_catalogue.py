"""The mutants `make mutate` tries: small, plausible bugs in the kernels and references.

Python sources (the NumPy reference, the Numba bodies and kernels for CPU and CUDA) are parsed
with `ast`, so a mutation lands on code, never on a docstring or comment; C sources (csrc/) go
through a token catalogue over code lines (comments and preprocessor lines skipped). Operators:
- comparison flips: < <= > >= == != (each to its off-by-one neighbour and its negation),
  `is None` <-> `is not None`;
- operator swaps: + <-> -, * <-> /, & <-> |, << <-> >>, and C's compound assignments;
- dropped terms: `a + b` -> `a`, `a - b` -> `a`, `a * b` -> `a` (a coefficient or term lost);
- swapped coefficients and off-by-one tails: integer constants n -> n + 1 and n - 1, 0 <-> 1
  in C's casts, True <-> False;
- a negation dropped: `-x` -> `x`.
Each mutant is (file, line, a one-line description, the mutated source).
"""
from __future__ import annotations

import ast
import re
from typing import NamedTuple


class Mutant(NamedTuple):
    path: str
    line: int
    what: str      # "<original> -> <mutated>" on that line
    source: str    # the whole mutated file

    @property
    def key(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


BINOP_SWAPS = {ast.Add: "-", ast.Sub: "+", ast.Mult: "/", ast.Div: "*", ast.FloorDiv: "*",
               ast.BitAnd: "|", ast.BitOr: "&", ast.LShift: ">>", ast.RShift: "<<",
               ast.BitXor: "|", ast.Mod: "//"}
OP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
           ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<", ast.RShift: ">>", ast.BitXor: "^",
           ast.Mod: "%"}
CMP_SWAPS = {ast.Lt: ("<=", ">="), ast.LtE: ("<", ">"), ast.Gt: (">=", "<="),
             ast.GtE: (">", "<"), ast.Eq: ("!=",), ast.NotEq: ("==",),
             ast.Is: ("is not",), ast.IsNot: ("is",)}
CMP_TEXT = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
            ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not"}


def _offsets(src):
    starts, pos = [], 0
    for line in src.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    return starts


def _span(starts, node):
    return starts[node.lineno - 1] + node.col_offset, starts[node.end_lineno - 1] + node.end_col_offset


def _docstring_nodes(tree):
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def python_mutants(path: str, src: str) -> list[Mutant]:
    """Mutants of the code inside the functions of a Python source file."""
    tree, starts = ast.parse(src), _offsets(src)
    docs, out = _docstring_nodes(tree), []
    lines = src.splitlines()

    def add(node_line, a, b, text, what):
        if "no mutate" in lines[node_line - 1]:
            return
        col = a - starts[node_line - 1] + 1
        out.append(Mutant(path, node_line, f"{what} (col {col})", src[:a] + text + src[b:]))

    def between(left, right, token):
        """Offset of `token` in the source between two nodes (an operator's position)."""
        a, b = _span(starts, left)[1], _span(starts, right)[0]
        i = src.find(token, a, b)
        return i if i >= 0 else None

    funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    seen = set()
    for fn in funcs:
        for node in ast.walk(fn):
            if id(node) in seen or id(node) in docs:
                continue
            seen.add(id(node))
            if isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAPS:
                tok = OP_TEXT[type(node.op)]
                i = between(node.left, node.right, tok)
                if i is not None:
                    new = BINOP_SWAPS[type(node.op)]
                    add(node.lineno, i, i + len(tok), new, f"{tok} -> {new}")
                a, b = _span(starts, node)
                left = src[slice(*_span(starts, node.left))]
                if type(node.op) in (ast.Add, ast.Sub, ast.Mult) and node.lineno == node.end_lineno:
                    add(node.lineno, a, b, f"({left})", f"{src[a:b]} -> {left} (term dropped)")
            elif isinstance(node, ast.Compare) and len(node.ops) == 1:
                op = type(node.ops[0])
                if op in CMP_SWAPS:
                    tok = CMP_TEXT[op]
                    i = between(node.left, node.comparators[0], tok)
                    if i is not None:
                        for new in CMP_SWAPS[op]:
                            add(node.lineno, i, i + len(tok), new, f"{tok} -> {new}")
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
                a, b = _span(starts, node)
                inner = src[slice(*_span(starts, node.operand))]
                add(node.lineno, a, b, inner, f"-{inner} -> {inner}")
            elif isinstance(node, ast.Constant) and type(node.value) is int and node.lineno == node.end_lineno:
                a, b = _span(starts, node)
                for new in (node.value + 1, node.value - 1):
                    if new >= 0:
                        add(node.lineno, a, b, str(new), f"{node.value} -> {new}")
            elif isinstance(node, ast.Constant) and type(node.value) is bool:
                a, b = _span(starts, node)
                add(node.lineno, a, b, str(not node.value), f"{node.value} -> {not node.value}")
    return out


# C: binary operators written with spaces around them (the codebase's style), comparisons,
# compound assignments, casts of 0 / 1 and small integer constants in expressions
C_TOKENS = [
    (r"(?<=\s)\+(?=\s)", ("-",)), (r"(?<=\s)-(?=\s)", ("+",)), (r"(?<=\s)\*(?=\s)", ("/",)),
    (r"(?<=\s)/(?=\s)", ("*",)), (r"(?<=\s)>=(?=\s)", (">", "<")), (r"(?<=\s)<=(?=\s)", ("<", ">")),
    (r"(?<=\s)>(?=\s)", (">=", "<=")), (r"(?<=\s)<(?=\s)", ("<=", ">=")),
    (r"(?<=\s)==(?=\s)", ("!=",)), (r"(?<=\s)!=(?=\s)", ("==",)), (r"(?<=\s)\+=(?=\s)", ("-=",)),
    (r"(?<=\s)-=(?=\s)", ("+=",)), (r"(?<=\s)\*=(?=\s)", ("/=",)), (r"(?<=\s)&(?=\s)", ("|",)),
    (r"(?<=\s)\|(?=\s)", ("&",)), (r"(?<=\s)>>(?=\s)", ("<<",)), (r"(?<=\s)<<(?=\s)", (">>",)),
    (r"\(T\)1\b", ("(T)0",)), (r"\(T\)0\b", ("(T)1",)),
    (r"(?<=[\s(\[])([0-9])(?=[\s);\]])", None),  # a one-digit constant: n -> n+1, n-1
]


def c_mutants(path: str, src: str) -> list[Mutant]:
    """Mutants of the code lines of a C source (no comments, no preprocessor lines except the
    bodies of multi-line macros, which hold kernels too)."""
    out, lines, in_comment = [], src.split("\n"), False
    for no, line in enumerate(lines, start=1):
        code = line
        if in_comment:
            if "*/" not in line:
                continue
            in_comment, code = False, line[line.index("*/") + 2:]
        if "/*" in code:
            head, _, tail = code.partition("/*")
            in_comment = "*/" not in tail
            code = head
        stripped = code.strip()
        if not stripped or stripped.startswith(("#include", "#if", "#endif", "#else", "#undef",
                                                "#elif", "//")) or "no mutate" in line:
            continue
        if stripped.startswith("#define") and not stripped.endswith("\\"):
            continue  # a one-line macro is a constant or a name: mutated where it is used
        for pattern, repl in C_TOKENS:
            for m in re.finditer(pattern, code):
                olds = m.group(0)
                news = repl or tuple(str(int(olds) + d) for d in (1, -1) if int(olds) + d >= 0)
                for new in news:
                    mutated = line[:m.start()] + new + line[m.end():]
                    text = "\n".join(lines[:no - 1] + [mutated] + lines[no:])
                    out.append(Mutant(path, no, f"{olds} -> {new} (col {m.start() + 1})", text))
    return out


def mutants(path: str, src: str) -> list[Mutant]:
    return c_mutants(path, src) if path.endswith((".c", ".h")) else python_mutants(path, src)
