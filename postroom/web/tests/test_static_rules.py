"""R58/R47/R49: the project's own static-analysis rules, run over the syntax tree of every
product module (tests and test support excluded) and over every template.

Ruff's S rules and bandit (in scripts/test) cover the generic cases; these rules encode what is
specific to Postroom: where ``csrf_exempt`` and HTML-safe marking may appear, that mail-protocol
TLS always gets an explicit context, that HTTP clients always time out, and that tokens come
from ``secrets``. Each rule has an example it must catch, so a rule that silently stops
matching fails its own test.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postroom.core.tests.processes import REPOSITORY

PACKAGE = REPOSITORY / "postroom"
# Where marking text as safe HTML or exempting a view from CSRF is allowed, and why.
CSRF_EXEMPT_ALLOWED = {("postroom/web/views.py", "csp_report")}  # browsers post reports without a token; it only logs
# (file, function) that may mark HTML safe. Message data qualifies only after our own escaping:
SAFE_HTML_ALLOWED: set[tuple[str, str]] = {
    # linkify escapes every piece of the text and adds only its own <a> markup (test_r28_* in mime).
    ("postroom/mime/text.py", "linkify"),
    # comment markdown is rendered with raw HTML off, then cleaned by nh3 right there (test_r27_*/test_r40_* in comments).
    ("postroom/comments/markdown.py", "comment_html"),
    # an icon: constant SVG paths of ours (web/icons.py) and the template's CSS class, escaped (test_icons.py).
    ("postroom/web/templatetags/ui.py", "_icon_svg"),
    # the inbox's list rows and sidebar entries: every value passes html.escape there, the rest is
    # constant markup and icons (test_markup.py in conversations).
    ("postroom/conversations/markup.py", "list_rows"),
    ("postroom/conversations/markup.py", "nav_entries"),
    # the conversation page's header, details pane and thread: the same way, every value through
    # html.escape, message text as mime.text's escaped blocks (test_page_markup.py in conversations).
    ("postroom/conversations/page_markup.py", "header"),
    ("postroom/conversations/page_markup.py", "details"),
    ("postroom/conversations/page_markup.py", "thread"),
    ("postroom/conversations/page_markup.py", "tail"),
}
SAFE_TEMPLATE_ALLOWED: set[str] = set()  # template paths that may use |safe or autoescape off: none
HTTP_CLIENTS = {"requests", "httpx"}
HTTP_VERBS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream"}
TOKEN_WORDS = ("token", "secret", "nonce", "key", "code", "password")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def _name(node: ast.AST) -> str:
    """The dotted name of a Name/Attribute chain (``requests.get``), else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {keyword.arg: keyword.value for keyword in call.keywords if keyword.arg}


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _string_built(node: ast.expr) -> bool:
    """An f-string, a concatenation or % / .format() of strings: SQL built from values."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.findings: list[Finding] = []
        self.function_stack: list[str] = []

    def report(self, node: ast.AST, rule: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), rule))

    @property
    def function(self) -> str:
        return self.function_stack[-1] if self.function_stack else ""

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if _name(target).endswith("csrf_exempt") and (self.path, node.name) not in CSRF_EXEMPT_ALLOWED:
                self.report(decorator, "csrf_exempt outside the allowlist")
        self.function_stack.append(node.name)
        self.generic_visit(node)
        self.function_stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]  # noqa: N815 (ast.NodeVisitor naming)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._check_module(node, node.module or "")
        for alias in node.names:
            if alias.name == "RawSQL":
                self.report(node, "RawSQL")
        self.generic_visit(node)

    def _check_module(self, node: ast.AST, module: str) -> None:
        root = module.split(".")[0]
        if root in {"pickle", "cPickle", "dill", "shelve", "marshal", "jsonpickle"}:
            self.report(node, f"unsafe deserialisation module {root}")
        if root == "random":
            self.report(node, "random module (use secrets)")

    def visit_Call(self, node: ast.Call) -> None:
        name = _name(node.func)
        last = name.rsplit(".", 1)[-1]
        keywords = _keywords(node)
        if name in {"eval", "exec", "compile", "__import__"}:
            self.report(node, f"{name}()")
        if name in {"yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"}:
            self.report(node, f"{name}() (use yaml.safe_load)")
        if _is_constant(keywords.get("shell"), True):
            self.report(node, "shell=True")
        if _is_constant(keywords.get("verify"), False):
            self.report(node, "verify=False")
        if last == "extra" and isinstance(node.func, ast.Attribute):
            self.report(node, ".extra()")
        if last == "RawSQL" or name.endswith("objects.raw"):
            self.report(node, "raw SQL")
        if last in {"execute", "executemany"} and node.args and _string_built(node.args[0]):
            self.report(node, "SQL built from strings")
        if last in {"mark_safe", "format_html", "format_html_join", "SafeString"} and (self.path, self.function) not in SAFE_HTML_ALLOWED:
            self.report(node, f"{last}() outside the allowlist")
        if last == "csrf_exempt" and (self.path, self.function) not in CSRF_EXEMPT_ALLOWED:
            self.report(node, "csrf_exempt outside the allowlist")
        if name.split(".")[0] in HTTP_CLIENTS and last in HTTP_VERBS and "timeout" not in keywords:
            self.report(node, f"{name}() without timeout")
        if name.endswith("urlopen") and "timeout" not in keywords:
            self.report(node, "urlopen() without timeout")
        if last in {"IMAP4_SSL", "SMTP_SSL", "starttls"} and not {"ssl_context", "context"} & set(keywords):
            self.report(node, f"{last}() without an explicit TLS context")
        if last == "_create_unverified_context":
            self.report(node, "unverified TLS context")
        if last == "uuid4" and (any(word in self.function.lower() for word in TOKEN_WORDS) or self.path.endswith("tokens.py")):
            self.report(node, "uuid4() as a secret (use secrets)")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "CERT_NONE":
            self.report(node, "ssl.CERT_NONE")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Attribute) and target.attr == "check_hostname" and _is_constant(node.value, False):
                self.report(node, "check_hostname = False")
            target_name = _name(target).rsplit(".", 1)[-1].upper()
            if (
                re.search(r"SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|ACCESS_TOKEN", target_name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and len(node.value.value) >= 8
            ):
                self.report(node, f"hard-coded secret in {target_name}")
        self.generic_visit(node)


def check_source(source: str, path: str) -> list[Finding]:
    checker = _Checker(path)
    checker.visit(ast.parse(source, filename=path))
    return checker.findings


def product_modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if "tests" in relative.parts or relative.parts[0] == "testing" or path.name in {"conftest.py", "tests_settings.py"}:
            continue
        yield path


_UNSAFE_TEMPLATE = re.compile(r"\|\s*safe(seq)?\b|{%\s*autoescape\s+off")


def test_r58_product_code_passes_the_project_rules() -> None:
    modules = list(product_modules())
    assert len(modules) > 40
    findings = [
        finding for path in modules for finding in check_source(path.read_text(encoding="utf-8"), str(path.relative_to(REPOSITORY)))
    ]
    assert not findings, "\n".join(map(str, findings))


def test_r58_templates_never_turn_off_escaping() -> None:
    templates = sorted(PACKAGE.rglob("templates/**/*.html"))
    assert len(templates) > 10
    unsafe = [
        f"{path.relative_to(REPOSITORY)}:{number}"
        for path in templates
        if str(path.relative_to(REPOSITORY)) not in SAFE_TEMPLATE_ALLOWED
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if _UNSAFE_TEMPLATE.search(line)
    ]
    assert not unsafe, unsafe


BAD_EXAMPLES = {
    "eval()": "eval(user_input)",
    "exec()": "exec(code)",
    "unsafe deserialisation module pickle": "import pickle",
    "unsafe deserialisation module marshal": "from marshal import loads",
    "yaml.load() (use yaml.safe_load)": "import yaml\nyaml.load(text)",
    "shell=True": "import subprocess\nsubprocess.run(command, shell=True)",
    ".extra()": "Message.objects.extra(where=[clause])",
    "RawSQL": "from django.db.models.expressions import RawSQL",
    "raw SQL": "User.objects.raw(query)",
    "SQL built from strings": "cursor.execute(f'SELECT * FROM t WHERE id = {value}')",
    "mark_safe() outside the allowlist": "from django.utils.safestring import mark_safe\nmark_safe(message.subject)",
    "format_html() outside the allowlist": "format_html('<b>{}</b>', message.subject)",
    "csrf_exempt outside the allowlist": "@csrf_exempt\ndef webhook(request): ...",
    "verify=False": "requests.get(url, verify=False, timeout=5)",
    "requests.post() without timeout": "requests.post(url, data=body)",
    "urlopen() without timeout": "urllib.request.urlopen(url)",
    "IMAP4_SSL() without an explicit TLS context": "imaplib.IMAP4_SSL(host, 993)",
    "SMTP_SSL() without an explicit TLS context": "smtplib.SMTP_SSL(host, 465)",
    "starttls() without an explicit TLS context": "connection.starttls()",
    "unverified TLS context": "ssl._create_unverified_context()",
    "ssl.CERT_NONE": "context.verify_mode = ssl.CERT_NONE",
    "check_hostname = False": "context.check_hostname = False",
    "random module (use secrets)": "import random",
    "uuid4() as a secret (use secrets)": "def new_invite_token():\n    return uuid.uuid4().hex",
    "hard-coded secret in SMTP_PASSWORD": "SMTP_PASSWORD = 'hunter2hunter2'",
}

GOOD_EXAMPLES = [
    "cursor.execute('SELECT 1')",
    "cursor.execute('SELECT * FROM t WHERE id = %s', [value])",
    "requests.get(url, timeout=10)",
    "imaplib.IMAP4_SSL(host, 993, ssl_context=ssl.create_default_context())",
    "smtplib.SMTP_SSL(host, 465, context=context)",
    "connection.starttls(ssl_context=context)",
    "@csrf_exempt\ndef csp_report(request): ...",
    "def new_token():\n    return secrets.token_urlsafe(32)",
    "def new_message_id():\n    return uuid.uuid4().hex",
    "SECRET_KEY = env.secret('POSTROOM_SECRET_KEY')",
    "PASSWORD_RESET_TIMEOUT = 3600",
    "value = env.raw('NAME')",
    "pattern = re.compile(r'x')",
]


@pytest.mark.parametrize(("rule", "source"), BAD_EXAMPLES.items())
def test_r58_each_rule_catches_its_example(rule: str, source: str) -> None:
    rules = {finding.rule for finding in check_source(source, "postroom/web/views.py")}
    assert rule in rules


@pytest.mark.parametrize("source", GOOD_EXAMPLES)
def test_r58_rules_accept_the_safe_forms(source: str) -> None:
    assert check_source(source, "postroom/web/views.py") == []


@pytest.mark.parametrize(
    "template", ["{{ message.body|safe }}", "{{ items|safeseq }}", "{% autoescape off %}{{ x }}{% endautoescape %}", "{{ x | safe }}"]
)
def test_r58_template_rule_catches_unescaped_output(template: str) -> None:
    assert _UNSAFE_TEMPLATE.search(template)


def test_r47_ruff_security_rules_cover_product_code() -> None:
    """S311 (random for security) and the other S rules apply to everything but tests."""
    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "S" in config["select"]
    assert not [code for code in config.get("ignore", []) if re.fullmatch(r"S\d*", code)]
    for pattern, ignored in config.get("per-file-ignores", {}).items():
        if "S311" in ignored:
            assert "tests" in pattern or pattern.startswith("bench"), pattern


def test_r58_bandit_runs_in_the_test_command() -> None:
    script = (REPOSITORY / "scripts" / "test").read_text()
    (line,) = [line for line in script.splitlines() if "bin/bandit" in line]
    assert " -ll" in line
    assert "-r postroom" in line
