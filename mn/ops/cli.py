"""zstack-cli: call the MN's public API from a shell, one command at a time or interactively.

    zstack-cli [-H HOST] [-p PORT] [ApiName key=value ...]

Parameters are typed by the catalogue (lists comma-separated or JSON, ints, booleans, JSON maps);
`systemTags=a::b,c::d`. Query APIs take ZStack's CLI query syntax: the query parameters (fields=a,b,
start=, limit=, count=, replyWithCount=, sortBy=, sortDirection=, groupBy=, filterName=) and, as
every other token, a condition `<field><op><value>` with op one of = != > >= < <= ?= (in) !?=
(not in) ~= (like) !~= (not like), `field=null` / `field!=null` or `field is [not] null`; the
field may be a path through expansions (`vmNics.l3Network.zone.name=z`) or `__systemTag__` /
`__userTag__`, and the value keeps its text (the MN types it by the field). Tab completion is
derived from the catalogue. Passwords are sent as SHA-512 hex, as ZStack's CLI does; a password
left out of LogInByAccount, LogInByUser, CreateAccount or CreateUser is asked for without echo. The
session of a login is kept per MN in ~/.zstack/cli/session; the shell's history in
~/.zstack/cli/history (mode 0600), where no password ever goes: `...password=` arguments are taken
out of each line as it is read, and out of the lines an older history file holds.
The CLI reaches the MN only through mn.client.ZStackClient (HTTP); completion reads mn.query's
table map (no database) to offer only the expansions this MN can follow.
"""

from __future__ import annotations

import argparse
import cmd
import contextlib
import difflib
import hashlib
import json
import os
import re
import shlex
import sys
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from mn.catalogue.catalog import ApiSpec, Catalog, ParamSpec
from mn.catalogue.conditions import parse_condition
from mn.errors import ApiError

# APIs whose password fields travel as SHA-512 hex (LDAP binds with the clear password).
HASHED_PASSWORDS: dict[str, tuple[str, ...]] = {
    "LogInByAccount": ("password",), "LogInByUser": ("password",), "CreateAccount": ("password",),
    "CreateUser": ("password",), "UpdateAccount": ("password", "oldPassword"),
    "UpdateUser": ("password", "oldPassword"),
}
LOGIN_APIS = {"LogInByAccount": "accountName", "LogInByUser": "userName"}
PROMPTED_PASSWORDS = {"LogInByAccount": False, "LogInByUser": False, "CreateAccount": True, "CreateUser": True}
"""APIs whose `password` is asked for when left out; True: asked twice (a new password)."""
_SECRET_KEY = re.compile(r"\w*password", re.IGNORECASE)
_SECRET_ARG = re.compile(r"""(?:^|\s)\w*password=(?:"[^"]*"|'[^']*'|\S*)""", re.IGNORECASE)
TAG_PARAMS = ("systemTags", "userTags")
BUILTINS = ("help", "exit", "quit")
INVALID_SESSION = "ID.1001"
GENERAL_HELP = ("Type an API call: ApiName key=value ... (e.g. QueryZone name=z1 count=true).\n"
                "help ApiName shows its parameters; Tab completes API and parameter names, query fields\n"
                "and expansions (QueryVmInstance vmNics.l3Network.<Tab>) and fixed values; exit leaves.")
_KEY = re.compile(r"[A-Za-z_][\w.]*")
# A condition's name: a field, a tag pseudo-field or a path through expansions (zone.name).
_FIELD_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
QUERY_TAG_FIELDS = ("__systemTag__", "__userTag__")
CLI_OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "?=", "!?=", "~=", "!~=")
_INT = re.compile(r"-?\d+")


class UsageError(Exception):
    """A command line that cannot be turned into an API call."""


@dataclass
class Command:
    """One parsed API call: the spec and the message parameters as they go on the wire."""

    spec: ApiSpec
    params: dict[str, Any] = field(default_factory=dict)


def cli_home() -> Path:
    return Path.home() / ".zstack" / "cli"


# ---- parsing ------------------------------------------------------------------------------------


def _json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"the value of '{name}' is not valid JSON: {exc}") from None


def _scalar(t: str, raw: str) -> Any:
    """A value of type `t`; a value that does not fit stays a string for the MN to reject."""
    if t in ("int", "long") and _INT.fullmatch(raw.strip()):
        return int(raw)
    if t in ("float", "double"):
        with contextlib.suppress(ValueError):
            return float(raw)
    if t == "boolean" and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def parse_value(p: ParamSpec | None, name: str, raw: str) -> Any:
    """Type one `name=raw` argument by its catalogue parameter (None: not in the catalogue)."""
    if name in TAG_PARAMS:
        return _json(name, raw) if raw.startswith("[") else [t for t in raw.split(",") if t]
    if p is None:
        return raw
    if p.type == "list":
        if raw.startswith("["):
            return _json(name, raw)
        items = [x for x in raw.split(",") if x != ""]
        et = p.elementType or "string"
        return [_json(name, x) if et in ("object", "map") else _scalar(et, x) for x in items]
    if p.type == "map":
        value = _json(name, raw)
        if not isinstance(value, dict):
            raise UsageError(f"the value of '{name}' must be a JSON object, e.g. {name}='{{\"k\": \"v\"}}'")
        return value
    if p.type == "object":
        return _json(name, raw) if raw[:1] in ("{", "[") else raw
    return _scalar(p.type, raw)


def find_api(catalog: Catalog, name: str) -> ApiSpec:
    spec = catalog.api(name)
    if spec is None:
        close = difflib.get_close_matches(name, catalog.apis, n=3)
        raise UsageError(f"no API named {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    return spec


def scrub_secrets(line: str) -> str:
    """The command line without its `...password=value` arguments (what the history may keep);
    a line without one is returned unchanged."""
    if "password=" not in line.lower():
        return line
    try:
        tokens = shlex.split(line)
    except ValueError:  # unbalanced quotes: cut by pattern
        return " ".join(_SECRET_ARG.sub(" ", line).split())
    kept = [tok for tok in tokens if not _SECRET_KEY.fullmatch(tok.partition("=")[0]) or "=" not in tok]
    return shlex.join(kept)


def ask_password(api: str, confirm: bool) -> str:
    """The password read from the terminal without echo (twice when `confirm`)."""
    import getpass

    try:
        password = getpass.getpass(f"{api} password: ")
        if confirm and getpass.getpass("Retype the password: ") != password:
            raise UsageError("the two passwords differ")
    except EOFError:
        raise UsageError(f"{api} needs a password: none was typed") from None
    if not password:
        raise UsageError(f"{api} needs a password: an empty one was typed")
    return password


def _hash_passwords(spec: ApiSpec, params: dict[str, Any]) -> None:
    for k in HASHED_PASSWORDS.get(spec.name, ()):
        if isinstance(params.get(k), str):
            params[k] = hashlib.sha512(params[k].encode()).hexdigest()


def _merge_null_words(tokens: list[str]) -> list[str]:
    """Join `field is null` / `field is not null` typed as separate words into one condition."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for tail in (["is", "null"], ["is", "not", "null"]):
            if tokens[i + 1:i + 1 + len(tail)] == tail and _FIELD_PATH.fullmatch(tokens[i]):
                out.append(" ".join([tokens[i], *tail]))
                i += 1 + len(tail)
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def _query_param(p: ParamSpec, raw: str) -> Any:
    """A query parameter (limit=, sortDirection=, fields=, ...), checked where the CLI can tell."""
    value = parse_value(p, p.name, raw)
    if p.type in ("int", "long") and not isinstance(value, int):
        raise UsageError(f"{p.name} takes an integer, got {raw!r}")
    if p.type == "boolean" and not isinstance(value, bool):
        raise UsageError(f"{p.name} takes true or false, got {raw!r}")
    if p.validValues and value not in p.validValues:
        raise UsageError(f"{p.name} takes one of {', '.join(p.validValues)}, got {raw!r}")
    return value


def _condition(tok: str) -> dict[str, Any]:
    """One query condition token → {name, op, value}; the value keeps its text (the MN types it)."""
    try:
        cond = parse_condition(tok)
    except ApiError:
        cond = None
    if cond is None or not _FIELD_PATH.fullmatch(cond["name"]):
        raise UsageError(f"cannot parse the query condition {tok!r}: expected <field><op><value>, "
                         f"op one of {' '.join(CLI_OPERATORS)} (or field=null, field!=null), "
                         f"field a name or a path through expansions like zone.name")
    return cond


def parse_query(spec: ApiSpec, tokens: list[str]) -> dict[str, Any]:
    """The arguments of a Query API: query parameters by name, every other token a condition."""
    params: dict[str, Any] = {}
    conditions: list[dict[str, Any]] = []
    for tok in _merge_null_words(tokens):
        key, eq, raw = tok.partition("=")
        if eq and key in spec.param_map and key != "conditions":
            params[key] = _query_param(spec.param_map[key], raw)
        else:
            conditions.append(_condition(tok))
    params["conditions"] = conditions
    return params


def parse_command(catalog: Catalog, tokens: list[str], ask: Any = None) -> Command:
    """`ApiName key=value ...` (already shell-split) → Command; UsageError when malformed.
    `ask(api, confirm)` gives a password left out of an API of PROMPTED_PASSWORDS."""
    if not tokens:
        raise UsageError("no API name given")
    spec = find_api(catalog, tokens[0])
    command = Command(spec)
    if spec.kind == "query":
        command.params = parse_query(spec, tokens[1:])
        return command
    for tok in tokens[1:]:
        key, eq, raw = tok.partition("=")
        if not eq or not _KEY.fullmatch(key):
            raise UsageError(f"expected key=value, got {tok!r}")
        command.params[key] = parse_value(spec.param_map.get(key), key, raw)
    if ask is not None and spec.name in PROMPTED_PASSWORDS and "password" not in command.params:
        command.params["password"] = ask(spec.name, PROMPTED_PASSWORDS[spec.name])
    _hash_passwords(spec, command.params)
    return command


# ---- completion ---------------------------------------------------------------------------------


@cache
def _query_models() -> dict[str, type] | None:
    """Inventory → model of what this MN's query compiler can query, with the models of the plugins
    installed here (None: not importable here)."""
    try:
        from mn import plugins, query

        plugins.load("models")
        query.refresh_targets()
    except Exception:  # noqa: BLE001  (completion must work without the MN's code)
        return None
    return {inv: t.model for inv, t in query.TARGETS.items()}


def _expansion_usable(exp: dict, source: str) -> bool:
    """Whether this MN can follow an expansion from `source` (as mn.query does), else False."""
    models = _query_models()
    if models is None:
        return True
    src, dst = models.get(source), models.get(exp.get("inventory", ""))
    return (src is not None and dst is not None and hasattr(src, exp.get("foreignKey", ""))
            and hasattr(dst, exp.get("expandedInventoryKey", "")))


def _field_usable(inventory: str, name: str) -> bool:
    models = _query_models()
    if models is None:
        return True
    model = models.get(inventory)
    return model is not None and hasattr(model, name)


def _path_options(catalog: Catalog, spec: ApiSpec, path: str) -> list[str] | None:
    """Condition names one level below `path` ("" or "vmNics.l3Network"): `field=` and `exp.`."""
    inventory = spec.inventory or ""
    if inventory not in catalog.inventories:
        return None
    inv = catalog.inventories[inventory]
    expansions = {e["field"]: e for e in (*inv.expanded, *spec.expanded) if e.get("field")}
    types = dict(inv.fields)
    fields = [f for f in spec.queryable if f in types]
    for step in path.split(".") if path else ():
        exp = expansions.get(step)
        if exp is None or exp.get("inventory") not in catalog.inventories \
                or not _expansion_usable(exp, inventory):
            return None
        inventory = exp["inventory"]
        inv = catalog.inventories[inventory]
        expansions = {e["field"]: e for e in inv.expanded if e.get("field")}
        types = dict(inv.fields)
        fields = list(types)
    prefix = f"{path}." if path else ""
    options = [f"{prefix}{f}=" for f in fields if types[f] != "list" and _field_usable(inventory, f)]
    options += [f"{prefix}{t}=" for t in QUERY_TAG_FIELDS]
    options += [f"{prefix}{n}." for n, e in expansions.items() if _expansion_usable(e, inventory)]
    return options


def _value_options(catalog: Catalog, spec: ApiSpec, text: str) -> list[str]:
    """Completions after `key=`: validValues, and field names for a query's sortBy= / fields=."""
    key, _, value = text.partition("=")
    p = spec.param_map.get(key)
    if p is None:
        return []
    if spec.kind == "query" and key in ("sortBy", "fields"):
        done, _, last = value.rpartition(",")
        head = f"{key}={done}," if done else f"{key}="
        names = [o[:-1] for o in _path_options(catalog, spec, "") or () if o.endswith("=")
                 and o[:-1] not in QUERY_TAG_FIELDS]
        return sorted(head + n for n in names if n.startswith(last))
    return sorted(f"{key}={v}" for v in p.validValues or () if v.startswith(value))


def complete(catalog: Catalog, words_before: list[str], text: str) -> list[str]:
    """Completions of `text` from the catalogue.

    No API yet: API names. After an API: its `param=` names, or after `param=` its validValues.
    After a Query API: queryable fields (`name=`), tag pseudo-fields, query parameters and
    expansions (`vmNics.`); after `exp.`, the expanded inventory's fields and expansions, to any
    depth. Expansions this MN cannot query (no table in mn.query.TARGETS) are not offered.
    """
    if not words_before:
        names = [*BUILTINS, *catalog.apis]
        return sorted(n for n in names if n.startswith(text))
    spec = catalog.api(words_before[0])
    if spec is None:
        return []
    if "=" in text:
        return _value_options(catalog, spec, text)
    used = {w.split("=", 1)[0] for w in words_before[1:]}
    if spec.kind == "query":
        path = text.rpartition(".")[0]
        options = _path_options(catalog, spec, path) or []
        if not path:
            options += [f"{n}=" for n in spec.param_map if n != "conditions" and n not in used]
    else:
        options = [f"{n}=" for n in (*spec.param_map, *TAG_PARAMS) if n not in used]
    return sorted({o for o in options if o.startswith(text)})


def describe(spec: ApiSpec, catalog: Catalog | None = None) -> str:
    """A short help text of one API from the catalogue (with `catalog`: a query's expansions too)."""
    lines = [f"{spec.name} ({spec.kind}{', no session' if spec.noSession else ''}): {spec.message}"]
    for p in spec.params:
        extra = f" of {p.elementType}" if p.type == "list" and p.elementType else ""
        valid = f" one of {','.join(p.validValues)}" if p.validValues else ""
        lines.append(f"  {p.name}{' (required)' if p.required else ''}: {p.type}{extra}{valid}")
    if spec.kind == "query":
        lines.append(f"  conditions on: {', '.join(spec.queryable)}")
        options = _path_options(catalog, spec, "") if catalog is not None else None
        exps = [o[:-1] for o in options or () if o.endswith(".")]
        if exps:
            lines.append(f"  through expansions: {', '.join(exps)} (e.g. {exps[0]}.uuid=...)")
    return "\n".join(lines)


# ---- sessions -----------------------------------------------------------------------------------


class SessionStore:
    """Logged-in sessions per MN ("host:port" → {"uuid", "account"}) in one JSON file (0600)."""

    def __init__(self, path: Path):
        self.path = path

    def _all(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, str] | None:
        entry = self._all().get(key)
        return entry if isinstance(entry, dict) and entry.get("uuid") else None

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)

    def save(self, key: str, uuid: str, account: str) -> None:
        data = self._all()
        data[key] = {"uuid": uuid, "account": account}
        self._write(data)

    def drop(self, key: str) -> None:
        data = self._all()
        if data.pop(key, None) is not None:
            self._write(data)


# ---- running commands ---------------------------------------------------------------------------


class Cli:
    """Runs parsed commands against one MN and prints replies (stdout) and errors (stderr)."""

    def __init__(self, host: str, port: int, compact: bool = False, timeout: float = 600.0):
        from mn.client import ZStackClient

        self.key = f"{host}:{port}"
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self.store = SessionStore(cli_home() / "session")
        entry = self.store.get(self.key)
        self.client = ZStackClient(self.url, entry["uuid"] if entry else None, timeout=timeout)
        self.catalog = self.client.catalog
        self.compact = compact

    @property
    def account(self) -> str | None:
        entry = self.store.get(self.key)
        return entry.get("account") if entry else None

    def print_reply(self, reply: dict[str, Any]) -> None:
        if self.compact:
            print(json.dumps(reply, separators=(",", ":"), ensure_ascii=False))
        else:
            print(json.dumps(reply, indent=2, ensure_ascii=False))

    def run(self, tokens: list[str]) -> int:
        """Run one command line; returns the exit code (0 ok, 1 API/usage error)."""
        import urllib3

        from mn.client import ClientError

        if tokens and tokens[0] == "help":
            return self.help(tokens[1:])
        try:
            command = parse_command(self.catalog, tokens, ask=ask_password)
            reply = self.execute(command)
        except UsageError as exc:
            print(f"usage error: {exc}", file=sys.stderr)
            return 1
        except ClientError as exc:
            self.print_error(exc.api, exc.error)
            return 1
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            print(f"error: cannot reach the management node at {self.url}: {exc}", file=sys.stderr)
            return 1
        except (TimeoutError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        self.print_reply(reply)
        return 0

    def help(self, names: list[str]) -> int:
        """`help [ApiName ...]`: the parameters of APIs, from the catalogue."""
        if not names:
            print(GENERAL_HELP)
            return 0
        for name in names:
            spec = self.catalog.api(name)
            if spec is None:
                print(f"usage error: no API named {name!r}", file=sys.stderr)
                return 1
            print(describe(spec, self.catalog))
        return 0

    def execute(self, command: Command) -> dict[str, Any]:
        spec, params = command.spec, command.params
        if spec.name == "LogOut":
            params.setdefault("sessionUuid", self.client.session)
            if not params["sessionUuid"]:
                raise UsageError(f"not logged in to {self.key}")
        reply = self.client.call(spec.name, **params)
        if spec.name in LOGIN_APIS:
            uuid = (reply.get("inventory") or {}).get("uuid")
            if uuid:
                self.client.session = uuid
                self.store.save(self.key, uuid, str(params.get(LOGIN_APIS[spec.name], "")))
        elif spec.name == "LogOut" and params["sessionUuid"] == self.client.session:
            self.client.session = None
            self.store.drop(self.key)
        return reply

    def print_error(self, api: str, error: dict[str, Any]) -> None:
        print(f"error: {api} failed", file=sys.stderr)
        for k in ("code", "description", "details"):
            if error.get(k):
                print(f"  {k}: {error[k]}", file=sys.stderr)
        if error.get("code") == INVALID_SESSION:
            self.store.drop(self.key)
            self.client.session = None
            print("  hint: log in with: LogInByAccount accountName=admin password=<password>", file=sys.stderr)


class Shell(cmd.Cmd):
    """The interactive shell: `ApiName key=value ...` per line, tab completion, history."""

    intro = "ZStack CLI: ApiName key=value ...; 'help ApiName' for parameters, Tab to complete, 'exit' to leave."

    def __init__(self, cli: Cli):
        super().__init__()
        self.cli = cli
        self.history = cli_home() / "history"
        self._set_prompt()

    def _set_prompt(self) -> None:
        self.prompt = f"{self.cli.account} >>> " if self.cli.account else ">>> "

    def default(self, line: str) -> None:
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            print(f"usage error: {exc}", file=sys.stderr)
            return
        self.cli.run(tokens)

    def precmd(self, line: str) -> str:
        _scrub_history(last_only=True)
        return line

    def postcmd(self, stop: bool, line: str) -> bool:
        self._set_prompt()
        return stop

    def emptyline(self) -> bool:
        return False

    def do_help(self, arg: str) -> None:
        """help [ApiName]: how to use the shell, or an API's parameters."""
        self.cli.help(arg.split())

    def do_exit(self, _arg: str) -> bool:
        """exit: leave the shell."""
        return True

    do_quit = do_exit

    def do_EOF(self, _arg: str) -> bool:  # noqa: N802 (cmd's name for Ctrl-D)
        print()
        return True

    def completenames(self, text: str, *_ignored: Any) -> list[str]:
        return complete(self.cli.catalog, [], text)

    def completedefault(self, text: str, line: str, begidx: int, _endidx: int) -> list[str]:
        return complete(self.cli.catalog, line[:begidx].split(), text)

    def complete_help(self, text: str, *_ignored: Any) -> list[str]:
        return [n for n in complete(self.cli.catalog, [], text) if n not in BUILTINS]

    def preloop(self) -> None:
        try:
            import readline
        except ImportError:
            return
        # Warm up what query completion reads, so the first Tab does not wait for the import.
        threading.Thread(target=_query_models, daemon=True).start()
        readline.set_completer_delims(" \t\n\"'")
        readline.set_history_length(2000)
        with contextlib.suppress(OSError):
            readline.read_history_file(self.history)
            if _scrub_history(last_only=False):
                self._write_history()

    def postloop(self) -> None:
        try:
            import readline  # noqa: F401
        except ImportError:
            return
        _scrub_history(last_only=False)
        self._write_history()

    def _write_history(self) -> None:
        import readline

        with contextlib.suppress(OSError):
            self.history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            readline.write_history_file(self.history)
            os.chmod(self.history, 0o600)

    def loop(self) -> None:
        """cmdloop, where Ctrl-C abandons the line instead of leaving the shell."""
        intro: str | None = self.intro
        while True:
            try:
                self.cmdloop(intro)
                return
            except KeyboardInterrupt:
                print("^C")
                intro = ""


def _scrub_history(last_only: bool) -> bool:
    """Take passwords out of readline's history (its last line, or every line); True if any was."""
    try:
        import readline
    except ImportError:
        return False
    n = readline.get_current_history_length()
    changed = False
    for pos in range(n, 0 if not last_only else max(n - 1, 0), -1):  # 1-based, from the newest
        line = readline.get_history_item(pos)
        if line is None:
            continue
        clean = scrub_secrets(line)
        if clean != line:
            changed = True
            if clean:
                readline.replace_history_item(pos - 1, clean)
            else:
                readline.remove_history_item(pos - 1)
    return changed


# ---- entry point --------------------------------------------------------------------------------


def _default_endpoint() -> tuple[str, int]:
    """This machine's MN (its zstack.properties and ZSTACK_* env), else 127.0.0.1:8080."""
    from mn.config import MNConfig, default_home

    try:
        config = MNConfig.load(default_home() / "zstack.properties")
    except (TypeError, ValueError):
        return "127.0.0.1", 8080
    host = config.host if config.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return host, config.port or 8080


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zstack-cli", description="Call the ZStack API: zstack-cli [options] ApiName key=value ... "
        "(no command: interactive shell).",
        epilog="examples: zstack-cli LogInByAccount accountName=admin password=password; "
               "zstack-cli CreateZone name=z1; zstack-cli QueryZone name=z1 fields=uuid,name")
    parser.add_argument("-H", "--host", help="MN address (default: this machine's MN, else 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, help="MN API port (default: this machine's MN, else 8080)")
    parser.add_argument("--json-compact", action="store_true", help="print replies as one-line JSON")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for a call (default 600)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="ApiName key=value ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host, port = args.host, args.port
    if host is None or port is None:
        dhost, dport = _default_endpoint()
        host, port = host or dhost, port or dport
    cli = Cli(host, port, compact=args.json_compact, timeout=args.timeout)
    if args.command:
        return cli.run(args.command)
    Shell(cli).loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
