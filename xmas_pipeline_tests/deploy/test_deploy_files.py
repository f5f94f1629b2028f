"""The deployment kit under deploy/, parsed and held against the production topology.

Nothing here starts a container, a unit or a pod. Every file is parsed (YAML, systemd units,
env files, the Dockerfile and the Caddyfile by small line parsers) and compared with
`xmas_pipeline_tests/support/topology.py`. Each process must run the topology's command,
argument for argument, and see exactly the variables its process reads. The Dagster UI must
never be reachable without a login, and only the intake's public paths may reach the
intake. The last test loads deploy/dagster.yaml as a real Dagster instance on PostgreSQL.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from xmas_pipeline_tests.support import topology
from xmas_pipeline_tests.support.stores import postgres_database

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"

# Where the image (and the VM) keep the Dagster instance and workspace files.
DAGSTER_HOME = "/opt/dagster/dagster_home"
WORKSPACE = f"{DAGSTER_HOME}/workspace.yaml"
VENV_BIN = "/opt/xmas/venv/bin"

APP_SERVICES = {
    "migrate": topology.migrate_command(),
    "store-migrate": topology.store_migrate_command(),
    "code-server": topology.code_server_command(),
    "webserver": topology.webserver_command(WORKSPACE),
    "daemon": topology.daemon_command(WORKSPACE),
    "intake": topology.intake_command(),
}
# On the VM every process listens on loopback only: Caddy fronts the intake and the UI.
UNITS = {
    "xmas-code-server.service": ("code-server", topology.code_server_command(host="127.0.0.1")),
    "xmas-webserver.service": ("webserver", topology.webserver_command(WORKSPACE, "127.0.0.1")),
    "xmas-daemon.service": ("daemon", topology.daemon_command(WORKSPACE)),
    "xmas-intake.service": ("intake", topology.intake_command(host="127.0.0.1")),
}
# Run once (Type=oneshot) before the units that Require= them.
MIGRATE_UNIT = "xmas-dagster-migrate.service"
STORE_MIGRATE_UNIT = "xmas-store-migrate.service"
ALL_UNITS = {
    **UNITS,
    MIGRATE_UNIT: ("migrate", topology.migrate_command()),
    STORE_MIGRATE_UNIT: ("store-migrate", topology.store_migrate_command()),
}
# The env files each unit reads (/etc/xmas/<name>, from deploy/systemd/<name>.example).
UNIT_ENV_FILES = {
    "xmas-code-server.service": ("dagster.env", "pipeline.env"),
    "xmas-webserver.service": ("dagster.env",),
    "xmas-daemon.service": ("dagster.env",),
    "xmas-intake.service": ("intake.env",),
    MIGRATE_UNIT: ("dagster.env",),
    STORE_MIGRATE_UNIT: ("store-migrate.env",),
}
ENV_EXAMPLES = sorted({name for names in UNIT_ENV_FILES.values() for name in names})


# -- reading the files ------------------------------------------------------------------


@cache
def text(relative: str) -> str:
    return (DEPLOY / relative).read_text(encoding="utf-8")


@cache
def load_yaml(relative: str) -> Any:
    return yaml.safe_load(text(relative))


@cache
def load_yaml_documents(relative: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text(relative)) if doc]


def env_refs(node: Any) -> set[str]:
    """The variables a Dagster YAML file reads through `{env: NAME}`."""
    if isinstance(node, dict):
        found = {node["env"]} if set(node) == {"env"} else set()
        return found.union(*(env_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(env_refs(item) for item in node))
    return set()


def workspace_env() -> set[str]:
    """What the webserver and the daemon read on top of Dagster's own variables: the code
    server's host, as deploy/workspace.yaml names it."""
    return env_refs(load_yaml("workspace.yaml"))


def workspace_server() -> dict[str, Any]:
    (entry,) = load_yaml("workspace.yaml")["load_from"]
    return entry["grpc_server"]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text("Dockerfile").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile():
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    return env


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit (or drop-in): section -> key -> every value given, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}: keep each setting on one line"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: a setting before any [section]"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a setting: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_environment(values: list[str]) -> dict[str, str]:
    """`Environment=` lines: space-separated NAME=value assignments."""
    return dict(item.split("=", 1) for value in values for item in shlex.split(value))


def parse_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}: {line!r}"
        assert name not in env, f"{path.name}: {name} twice"
        env[name] = value.strip().strip("'\"")
    return env


@dataclass
class Directive:
    """One Caddyfile line: its tokens, and the block it opens (if any)."""

    tokens: list[str]
    body: list[Directive] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.tokens[0]

    def find(self, name: str) -> list[Directive]:
        return [child for child in self.body if child.name == name]


def parse_caddyfile(source: str) -> list[Directive]:
    """The Caddyfile's blocks, one directive per line (the layout `caddy fmt` writes)."""
    root = Directive(["<root>"])
    stack = [root]
    for raw in source.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line == "}":
            stack.pop()
            assert stack, "an unmatched } in the Caddyfile"
            continue
        tokens = line.split()
        opens = tokens[-1] == "{"
        directive = Directive(tokens[:-1] if opens else tokens)
        assert "{" not in directive.tokens and "}" not in directive.tokens, line
        stack[-1].body.append(directive)
        if opens:
            stack.append(directive)
    assert stack == [root], "an unclosed { in the Caddyfile"
    return root.body


ENV_PLACEHOLDER = re.compile(r"\{\$([A-Z][A-Z0-9_]*)(?::([^}]*))?\}")


def caddy_placeholder(token: str) -> tuple[str, str | None]:
    """`{$NAME:default}` -> (NAME, default); the token must be exactly one placeholder."""
    match = ENV_PLACEHOLDER.fullmatch(token)
    assert match, f"{token!r} is not a Caddyfile environment placeholder"
    return match.group(1), match.group(2)


def caddy_sites() -> dict[str, Directive]:
    sites = {}
    for block in parse_caddyfile(text("Caddyfile")):
        (address,) = block.tokens
        sites[caddy_placeholder(address)[0]] = block
    return sites


def caddy_required_env() -> set[str]:
    """The variables the Caddyfile needs from its environment (those without a default)."""
    return {name for name, default in ENV_PLACEHOLDER.findall(text("Caddyfile")) if default == ""}


def caddy_upstream_defaults() -> dict[str, str]:
    return {
        name: default for name, default in ENV_PLACEHOLDER.findall(text("Caddyfile")) if default
    }


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def listen_address(command: list[str]) -> tuple[str, int]:
    return command[command.index("--host") + 1], int(command[command.index("--port") + 1])


# -- what a literal secret looks like ----------------------------------------------------

SECRET_PATTERNS = {
    "a bcrypt hash": re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}"),
    "a Resend API key": re.compile(r"\bre_[A-Za-z0-9_]{16,}"),
    "a Svix signing secret": re.compile(r"whsec_[A-Za-z0-9+/=]{16,}"),
    "an AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a chat webhook URL": re.compile(
        r"https://(?:discord(?:app)?\.com/api/webhooks|hooks\.slack\.com/services)/\w"
    ),
    # user:password@ in a URL, unless the password is ${...} or a placeholder like PASSWORD.
    "a password in a URL": re.compile(
        r"[a-z][a-z0-9+.-]*://[^\s:/@${}]+:(?!\$\{)(?![A-Z_]+@)[^\s@/]+@"
    ),
    "a credential assigned a value": re.compile(
        r"(?i)(?:password|passwd|secret|token|api_?key)['\"]?\s*[:=]\s*['\"]?"
        r"(?![$'\"\s{])[A-Za-z0-9+/_.\-]{12,}"
    ),
}
SECRET_NAME = re.compile(r"SECRET|_KEY$|TOKEN|PASSWORD|HASH|DATABASE_URL|POSTGRES_URL|WEBHOOK_URL")


def literal_secrets(content: str) -> list[str]:
    return [what for what, pattern in SECRET_PATTERNS.items() if pattern.search(content)]


def deploy_files() -> list[Path]:
    return sorted(path for path in DEPLOY.rglob("*") if path.is_file())


# -- the Dagster side: instance and workspace ---------------------------------------------


def test_the_instance_and_workspace_read_only_the_documented_variables() -> None:
    # The instance reads Dagster's own variables; the workspace only the code server's host.
    assert env_refs(load_yaml("dagster.yaml")) <= set(topology.DAGSTER_ENV)
    assert workspace_env() == {"XMAS_CODE_SERVER_HOST"}
    server = workspace_server()
    assert server["port"] == topology.CODE_SERVER_PORT
    assert server["location_name"] == topology.CODE_LOCATION


# -- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_installs_the_deploy_extra_and_sets_dagster_home() -> None:
    instructions = dockerfile()
    assert instructions[0][0] == "FROM"
    assert instructions[0][1].split("@")[0] == "python:3.11-slim"
    pip_installs = [
        shlex.split(command)
        for keyword, rest in instructions
        if keyword == "RUN"
        for command in rest.split("&&")
        if shlex.split(command)[:2] in (["pip", "install"], ["pip3", "install"])
    ]
    # Pinned dependencies from the lock file first, then the project itself without any.
    assert [args[2:] for args in pip_installs] == [
        ["-r", "deploy/requirements.lock"],
        ["--no-deps", ".[deploy]"],
    ]
    assert dockerfile_env()["DAGSTER_HOME"] == DAGSTER_HOME
    copies = [shlex.split(rest) for keyword, rest in instructions if keyword == "COPY"]
    assert ["deploy/dagster.yaml", "deploy/workspace.yaml", DAGSTER_HOME + "/"] in copies


def test_dockerfile_runs_as_a_non_root_user_with_no_fixed_command() -> None:
    instructions = dockerfile()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the image must switch away from root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # No RUN after the last USER: the user is the one the processes run as.
    last_user = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert all(keyword != "RUN" for keyword, _ in instructions[last_user:])
    # Compose, systemd and the chart give each process its command.
    assert not {"CMD", "ENTRYPOINT"} & {keyword for keyword, _ in instructions}
    # No secret as a build argument or a baked-in variable.
    names = set(dockerfile_env()) | {
        rest.split("=")[0] for keyword, rest in instructions if keyword == "ARG"
    }
    assert not {name for name in names if SECRET_NAME.search(name)}


# -- Docker Compose ---------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return load_yaml("docker-compose.yaml")


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def test_compose_runs_the_topology_commands() -> None:
    services = compose()["services"]
    assert set(services) == {*APP_SERVICES, "postgres", "proxy"}
    for name, command in APP_SERVICES.items():
        assert services[name]["command"] == command, name
    # All four run the one image, built from deploy/Dockerfile.
    images = {(services[name]["image"], str(services[name]["build"])) for name in APP_SERVICES}
    assert len(images) == 1
    build = services["code-server"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_compose_gives_each_process_exactly_its_variables() -> None:
    for name in APP_SERVICES:
        expected = set(topology.PROCESS_ENV[name])
        if name in ("webserver", "daemon"):
            expected |= workspace_env()
        assert set(service(name)["environment"]) == expected, name
    # The workspace's host is the service that runs the code server, on the workspace's port.
    for name in ("webserver", "daemon"):
        assert service(name)["environment"]["XMAS_CODE_SERVER_HOST"] == "code-server"
    assert listen_address(service("code-server")["command"])[1] == workspace_server()["port"]
    # DAGSTER_HOME is where the image put the instance and the workspace.
    for name in ("migrate", "code-server", "webserver", "daemon"):
        assert service(name)["environment"]["DAGSTER_HOME"] == dockerfile_env()["DAGSTER_HOME"]


def test_compose_requires_exactly_what_production_cannot_run_without() -> None:
    for process, required in topology.REQUIRED_ENV.items():
        environment = service(process)["environment"]
        for name in set(topology.PROCESS_ENV[process]) - set(topology.DAGSTER_ENV):
            value = str(environment[name])
            if name in required:
                assert ":?" in value, f"{process}: compose must refuse to start without {name}"
            elif "${" in value and name != "XMAS_PUBLIC_URL":
                assert ":-" in value and ":?" not in value, f"{process}: {name} is optional"


def test_compose_takes_every_secret_from_substitution() -> None:
    for name, spec in compose()["services"].items():
        for variable, value in (spec.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(variable):
                assert "${" in value, f"{name}: {variable} must come from ${{...}} or .env"
            literal = re.sub(r"\$\{[^}]*\}", "", value)
            assert not literal_secrets(literal), f"{name}: {variable}"


def test_compose_publishes_ports_only_on_the_proxy() -> None:
    services = compose()["services"]
    published = {name for name, spec in services.items() if spec.get("ports")}
    assert published == {"proxy"}
    container_ports = {
        int(str(port).split("/")[0].rsplit(":", 1)[-1]) for port in services["proxy"]["ports"]
    }
    assert container_ports == {80, 443}
    for name, spec in services.items():
        assert spec.get("network_mode") != "host", name
    # The webserver in particular: never published, reached by the proxy on the network.
    assert "ports" not in services["webserver"]
    assert caddy_upstream_defaults()["XMAS_UI_UPSTREAM"] == "webserver:3000"
    assert listen_address(services["webserver"]["command"]) == ("0.0.0.0", 3000)


def test_compose_shares_the_inbox_between_intake_and_code_server() -> None:
    volumes = compose()["volumes"]

    def inbox_volume(name: str) -> str:
        home = service(name)["environment"]["XMAS_HOME"]
        inbox = f"{home}/inbox"
        mounts = [entry.split(":") for entry in service(name)["volumes"]]
        covering = [
            (source, target)
            for source, target, *_ in mounts
            if inbox == target or inbox.startswith(target.rstrip("/") + "/")
        ]
        assert len(covering) == 1, f"{name}: one volume must hold {inbox}"
        source, _ = covering[0]
        assert source in volumes, f"{name}: the inbox must be on a named volume"
        return source

    # The same named volume at the same path, and neither points the inbox elsewhere.
    assert inbox_volume("intake") == inbox_volume("code-server")
    assert (
        service("intake")["environment"]["XMAS_HOME"]
        == service("code-server")["environment"]["XMAS_HOME"]
    )
    for name in ("intake", "code-server"):
        assert service(name)["environment"]["XMAS_INBOX_URL"] == "${XMAS_INBOX_URL:-}"


def test_compose_postgres_keeps_its_data_and_reports_health() -> None:
    postgres = service("postgres")
    source, target = postgres["volumes"][0].split(":")[:2]
    assert source in compose()["volumes"] and target == "/var/lib/postgresql/data"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    # The code server waits for the database; the webserver and daemon for the code server.
    assert service("code-server")["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("webserver", "daemon"):
        assert service(name)["depends_on"]["code-server"]["condition"] == "service_healthy"


def test_compose_runs_migrate_once_before_the_dagster_processes() -> None:
    migrate = service("migrate")
    assert migrate["command"] == topology.migrate_command()
    # One-shot: never restarted, so "exited with 0" is a state the others can wait for.
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert not migrate.get("ports") and not migrate.get("volumes")
    for name in topology.AFTER_MIGRATE:
        assert service(name)["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name
    # The intake never opens Dagster's database, so it does not wait.
    assert "migrate" not in (service("intake").get("depends_on") or {})


def test_compose_gives_caddy_the_caddyfile_and_its_variables() -> None:
    proxy = service("proxy")
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert set(proxy["environment"]) == caddy_required_env()
    # The intake upstream Caddy defaults to is the compose service and port of the intake.
    host, port = split_host_port(caddy_upstream_defaults()["XMAS_INTAKE_UPSTREAM"])
    assert host == "intake" and port == listen_address(service("intake")["command"])[1]


# -- Caddyfile --------------------------------------------------------------------------


def public_path_matchers() -> set[str]:
    """PUBLIC_PATHS as Caddy path matchers: a trailing `/` is a prefix."""
    return {path + "*" if path.endswith("/") else path for path in topology.PUBLIC_PATHS}


def test_caddy_serves_exactly_two_sites() -> None:
    assert set(caddy_sites()) == {"XMAS_DOMAIN", "XMAS_UI_DOMAIN"}


def test_caddy_passes_only_the_public_paths_to_the_intake() -> None:
    site = caddy_sites()["XMAS_DOMAIN"]
    matchers = {d.name: d.tokens[1:] for d in site.body if d.name.startswith("@")}
    handles = site.find("handle")
    # Nothing else at the top of the site: no bare reverse_proxy that would catch all paths.
    assert {d.name for d in site.body} - set(matchers) == {"handle"}
    proxied = [h for h in handles if any(d.name == "reverse_proxy" for d in h.body)]
    assert len(proxied) == 1
    (matcher,) = proxied[0].tokens[1:]
    kind, *paths = matchers[matcher]
    assert kind == "path"
    assert set(paths) == public_path_matchers()
    (proxy,) = proxied[0].body
    (upstream,) = proxy.tokens[1:]
    assert caddy_placeholder(upstream)[0] == "XMAS_INTAKE_UPSTREAM"
    # Everything else: one catch-all handle that only answers 404.
    fallbacks = [h for h in handles if len(h.tokens) == 1]
    assert len(fallbacks) == 1 and len(handles) == 2
    assert [d.tokens for d in fallbacks[0].body] == [["respond", "404"]]


def test_caddy_requires_basic_auth_for_the_ui() -> None:
    site = caddy_sites()["XMAS_UI_DOMAIN"]
    assert [d.name for d in site.body] == ["basic_auth", "reverse_proxy"]
    (auth,) = site.find("basic_auth")
    # No matcher and no algorithm override: every path, bcrypt.
    assert auth.tokens == ["basic_auth"]
    (account,) = auth.body
    user, password_hash = (caddy_placeholder(token)[0] for token in account.tokens)
    assert (user, password_hash) == ("XMAS_UI_USER", "XMAS_UI_PASSWORD_HASH")
    (proxy,) = site.find("reverse_proxy")
    assert caddy_placeholder(proxy.tokens[1])[0] == "XMAS_UI_UPSTREAM"
    assert len(proxy.tokens) == 2 and not proxy.body


# -- systemd (one VM) -------------------------------------------------------------------


def unit(name: str) -> dict[str, list[str]]:
    return parse_unit(SYSTEMD / name)["Service"]


def unit_words(name: str, section: str, key: str) -> list[str]:
    """Every word of a dependency setting (Requires=, After=, ...), over all its lines."""
    values = parse_unit(SYSTEMD / name)[section].get(key, [])
    return [word for value in values for word in value.split()]


def test_systemd_has_one_unit_per_process() -> None:
    assert {path.name for path in SYSTEMD.glob("*.service")} == set(ALL_UNITS)


@pytest.mark.parametrize("unit_name", sorted(UNITS))
def test_systemd_unit_runs_the_topology_command(unit_name: str) -> None:
    _, command = UNITS[unit_name]
    service_section = unit(unit_name)
    (exec_start,) = service_section["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == f"{VENV_BIN}/{command[0]}"
    assert argv[1:] == command[1:]
    assert service_section["EnvironmentFile"] == [
        f"/etc/xmas/{name}" for name in UNIT_ENV_FILES[unit_name]
    ]
    assert service_section["Restart"] == ["always"]
    # A restart takes every child with it (the code server's run workers above all).
    assert service_section["KillMode"] == ["control-group"]
    (user,) = service_section["User"]
    assert user not in ("root", "0")
    assert parse_unit(SYSTEMD / unit_name)["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("unit_name", sorted(ALL_UNITS))
def test_systemd_unit_sees_exactly_its_variables(unit_name: str) -> None:
    process, _ = ALL_UNITS[unit_name]
    service_section = unit(unit_name)
    assert service_section["EnvironmentFile"] == [
        f"/etc/xmas/{name}" for name in UNIT_ENV_FILES[unit_name]
    ]
    from_files = set().union(
        *(parse_env_file(SYSTEMD / f"{name}.example") for name in UNIT_ENV_FILES[unit_name])
    )
    fixed = unit_environment(service_section.get("Environment", []))
    expected = set(topology.PROCESS_ENV[process])
    if process in ("webserver", "daemon"):
        expected |= workspace_env()
    # Each file holds only what its processes read: nothing to unset.
    assert "UnsetEnvironment" not in service_section
    assert from_files | set(fixed) == expected
    if "DAGSTER_HOME" in fixed:
        assert fixed["DAGSTER_HOME"] == DAGSTER_HOME
    if process in ("webserver", "daemon"):
        # The workspace's host is where the code server unit listens.
        code_server = shlex.split(unit("xmas-code-server.service")["ExecStart"][0])
        assert fixed["XMAS_CODE_SERVER_HOST"] == listen_address(code_server)[0] == "127.0.0.1"


@pytest.mark.parametrize("migrate_unit", [MIGRATE_UNIT, STORE_MIGRATE_UNIT])
def test_systemd_migrate_runs_once_before_the_units_that_need_it(migrate_unit: str) -> None:
    process, command = ALL_UNITS[migrate_unit]
    service_section = unit(migrate_unit)
    (exec_start,) = service_section["ExecStart"]
    assert shlex.split(exec_start) == [f"{VENV_BIN}/{command[0]}", *command[1:]]
    # Runs to the end, then counts as started for the units that need it.
    assert service_section["Type"] == ["oneshot"]
    assert service_section["RemainAfterExit"] == ["yes"]
    assert "Restart" not in service_section
    # A throw-away user: it keeps nothing on disk.
    assert service_section["DynamicUser"] == ["yes"] and "User" not in service_section
    assert "postgresql.service" in unit_words(migrate_unit, "Unit", "After")
    assert parse_unit(SYSTEMD / migrate_unit)["Install"]["WantedBy"] == ["multi-user.target"]
    # Each unit that needs it starts after it; a failed migrate keeps the units that
    # Require= it stopped. The intake only Wants= the store's: it answers 503 meanwhile.
    by_process = {process: name for name, (process, _) in UNITS.items()}
    needing = topology.AFTER_MIGRATE if process == "migrate" else topology.AFTER_STORE_MIGRATE
    for needs in needing:
        unit_name = by_process[needs]
        assert migrate_unit in unit_words(unit_name, "Unit", "After"), unit_name
        if needs != "intake":
            assert migrate_unit in unit_words(unit_name, "Unit", "Requires"), unit_name
    assert MIGRATE_UNIT not in unit_words("xmas-intake.service", "Unit", "Requires")
    assert MIGRATE_UNIT not in unit_words("xmas-intake.service", "Unit", "After")


def test_systemd_processes_listen_on_loopback_only() -> None:
    for unit_name in ("xmas-webserver.service", "xmas-intake.service", "xmas-code-server.service"):
        argv = shlex.split(unit(unit_name)["ExecStart"][0])
        assert listen_address(argv)[0] == "127.0.0.1", unit_name


@pytest.mark.parametrize("example", ENV_EXAMPLES)
def test_systemd_env_examples_hold_variables_with_no_value(example: str) -> None:
    env = parse_env_file(SYSTEMD / f"{example}.example")
    assert env, example
    for name, value in env.items():
        assert value == "", f"{name} must be empty in the example"
    # Every variable has a comment right above it.
    lines = (SYSTEMD / f"{example}.example").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.match(r"[A-Z][A-Z0-9_]*=", line):
            assert lines[i - 1].startswith("#"), f"{line.split('=')[0]} has no comment"


def test_systemd_env_examples_are_exactly_the_units_files() -> None:
    shipped = {path.name.removesuffix(".example") for path in SYSTEMD.glob("*.env.example")}
    assert shipped - {"caddy.env"} == set(ENV_EXAMPLES)


def test_systemd_caddy_uses_the_same_caddyfile_with_loopback_upstreams() -> None:
    drop_in = parse_unit(SYSTEMD / "caddy.service.d" / "xmas.conf")["Service"]
    upstreams = unit_environment(drop_in["Environment"])
    assert set(upstreams) == set(caddy_upstream_defaults())
    for variable, unit_name in (
        ("XMAS_INTAKE_UPSTREAM", "xmas-intake.service"),
        ("XMAS_UI_UPSTREAM", "xmas-webserver.service"),
    ):
        argv = shlex.split(unit(unit_name)["ExecStart"][0])
        assert split_host_port(upstreams[variable]) == listen_address(argv)
    (env_file,) = drop_in["EnvironmentFile"]
    assert env_file == "/etc/xmas/caddy.env"
    caddy_env = parse_env_file(SYSTEMD / "caddy.env.example")
    assert set(caddy_env) == caddy_required_env()
    assert all(value == "" for value in caddy_env.values())
    # Caddy never reads the pipeline's secrets.
    for example in ENV_EXAMPLES:
        assert not set(caddy_env) & set(parse_env_file(SYSTEMD / f"{example}.example"))


# -- Kubernetes: the Helm values and the intake manifest ---------------------------------

# `dagster api grpc` options in the short form the chart writes them.
GRPC_SHORT_OPTIONS = {"-h": "--host", "-p": "--port", "-m": "--module-name", "-a": "--attribute"}


def helm() -> dict[str, Any]:
    return load_yaml("helm/values.yaml")


def helm_code_server() -> dict[str, Any]:
    (deployment,) = helm()["dagster-user-deployments"]["deployments"]
    return deployment


def intake_manifests() -> dict[str, dict[str, Any]]:
    documents = load_yaml_documents("k8s/intake.yaml")
    by_kind = {doc["kind"]: doc for doc in documents}
    assert len(by_kind) == len(documents) == 4
    return by_kind


def intake_container() -> dict[str, Any]:
    (container,) = intake_manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def intake_secret_refs() -> dict[str, dict[str, Any]]:
    return {item["name"]: item["valueFrom"]["secretKeyRef"] for item in intake_container()["env"]}


def test_helm_code_server_runs_the_topology_command() -> None:
    users = helm()["dagster-user-deployments"]
    assert users["enabled"] and users["enableSubchart"]
    deployment = helm_code_server()
    assert deployment["name"] == "xmas-pipeline"
    assert deployment["port"] == topology.CODE_SERVER_PORT
    # The chart's deployment template runs: dagster api grpc -h 0.0.0.0 -p <port> <args...>
    chart_argv = [
        "dagster",
        "api",
        "grpc",
        "-h",
        "0.0.0.0",
        "-p",
        str(deployment["port"]),
        *deployment["dagsterApiGrpcArgs"],
    ]
    assert [GRPC_SHORT_OPTIONS.get(arg, arg) for arg in chart_argv] == (
        topology.code_server_command()
    )
    # The same image as the intake's pods.
    image = deployment["image"]
    assert intake_container()["image"] == f"{image['repository']}:{image['tag']}"


def test_helm_code_server_reads_the_pipeline_secret() -> None:
    deployment = helm_code_server()
    # Its own Secret, never the intake's.
    (intake_secret,) = {ref["name"] for ref in intake_secret_refs().values()}
    assert deployment["envSecrets"] == [{"name": "xmas-pipeline-env"}]
    assert intake_secret != "xmas-pipeline-env"
    # Nothing set inline, and the run pods get the same environment.
    assert not deployment.get("env") and not deployment.get("envConfigMaps")
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    # DAGSTER_HOME: the chart sets it on every pod, to where the image keeps the files.
    assert helm()["global"]["dagsterHome"] == dockerfile_env()["DAGSTER_HOME"]


def test_helm_instance_matches_deploy_dagster_yaml() -> None:
    values = helm()
    instance = load_yaml("dagster.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    # External PostgreSQL; the password only in a Secret made by hand.
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # The chart fails to render when run limits are given in both places.
    assert not coordinator.get("config")
    monitoring, retries = daemon["runMonitoring"], daemon["runRetries"]
    assert monitoring["enabled"] is instance["run_monitoring"]["enabled"] is True
    assert monitoring["startTimeoutSeconds"] == instance["run_monitoring"]["start_timeout_seconds"]
    assert (
        monitoring["maxResumeRunAttempts"] == instance["run_monitoring"]["max_resume_run_attempts"]
    )
    assert monitoring["pollIntervalSeconds"] == instance["run_monitoring"]["poll_interval_seconds"]
    # A run worker killed mid-op leaves its pool slot taken until the daemon frees it.
    assert (
        monitoring["freeSlotsAfterRunEndSeconds"]
        == instance["run_monitoring"]["free_slots_after_run_end_seconds"]
        > 0
    )
    assert retries["enabled"] is instance["run_retries"]["enabled"] is True
    assert retries["maxRetries"] == instance["run_retries"]["max_retries"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert (
        concurrency["pools"]["defaultLimit"]
        == instance["concurrency"]["pools"]["default_limit"]
        == 1
    )
    assert concurrency["pools"]["granularity"] == instance["concurrency"]["pools"]["granularity"]
    assert (
        concurrency["runs"]["maxConcurrentRuns"]
        == instance["concurrency"]["runs"]["max_concurrent_runs"]
    )
    assert values["computeLogManager"]["type"] == instance["compute_logs"]["class"]
    assert values["telemetry"]["enabled"] is instance["telemetry"]["enabled"] is False


# What the chart's migration Job (templates/job-instance-migrate.yaml) runs.
HELM_MIGRATE_COMMAND = ["dagster", "instance", "migrate"]


def test_helm_runs_the_chart_migration_job_with_dagster_variables_only() -> None:
    values = helm()
    assert values["migrate"]["enabled"] is True
    assert topology.migrate_command() == HELM_MIGRATE_COMMAND
    # The Job takes the webserver's environment: it must hold nothing of the pipeline's.
    webserver = values["dagsterWebserver"]
    for key in ("env", "envConfigMaps", "envSecrets"):
        assert not webserver.get(key), f"dagsterWebserver.{key} reaches the migration Job"


def test_helm_never_exposes_the_webserver() -> None:
    values = helm()
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert values["ingress"]["enabled"] is False
    # The workspace names the chart's Service for the code server, and keeps the location name.
    (server,) = values["dagsterWebserver"]["workspace"]["servers"]
    assert values["dagsterWebserver"]["workspace"]["enabled"] is True
    assert server == {
        "host": helm_code_server()["name"],
        "port": helm_code_server()["port"],
        "name": topology.CODE_LOCATION,
    }
    # The intake's Ingress is the only one, and it leads to the intake alone.
    backends = {
        path["backend"]["service"]["name"]
        for rule in intake_manifests()["Ingress"]["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {intake_manifests()["Service"]["metadata"]["name"]}


def test_k8s_intake_runs_the_topology_command() -> None:
    deployment = intake_manifests()["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    container = intake_container()
    assert container["command"] == topology.intake_command()
    assert "args" not in container
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": listen_address(container["command"])[1]}
    for probe in ("readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz" and ports[http["port"]] == topology.INTAKE_PORT


def test_k8s_intake_reads_exactly_the_pipeline_variables_from_the_secret() -> None:
    refs = intake_secret_refs()
    assert list(refs) == list(topology.PROCESS_ENV["intake"])
    assert "envFrom" not in intake_container()
    for name, ref in refs.items():
        assert ref["key"] == name
    assert len({ref["name"] for ref in refs.values()}) == 1
    # Pods share no disk: without an object-store inbox the pod must not start.
    assert not refs["XMAS_INBOX_URL"].get("optional", False)
    for name, ref in refs.items():
        needed = name in topology.REQUIRED_ENV["intake"] or name == "XMAS_INBOX_URL"
        assert ref.get("optional", False) is not needed, name


def test_k8s_ingress_routes_only_the_public_paths_with_tls() -> None:
    manifests = intake_manifests()
    ingress, svc = manifests["Ingress"], manifests["Service"]
    spec = ingress["spec"]
    assert "defaultBackend" not in spec
    routed = set()
    for rule in spec["rules"]:
        for path in rule["http"]["paths"]:
            kind = "Prefix" if path["path"].endswith("/") else "Exact"
            assert path["pathType"] == kind, path["path"]
            routed.add(path["path"])
            backend = path["backend"]["service"]
            assert backend["name"] == svc["metadata"]["name"]
            (port,) = [p for p in svc["spec"]["ports"] if p["name"] == backend["port"]["name"]]
            assert port["targetPort"] == "http"
    assert routed == set(topology.PUBLIC_PATHS)
    tls_hosts = {host for entry in spec["tls"] for host in entry["hosts"]}
    assert {rule["host"] for rule in spec["rules"]} <= tls_hosts
    assert all(entry["secretName"] for entry in spec["tls"])
    # The Service sends traffic to the intake's pods.
    labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["type"] == "ClusterIP"


# -- PostgreSQL drivers -----------------------------------------------------------------

# A PostgreSQL URL (scheme, then a user, a host or a ${...}), with its driver if it names one.
POSTGRES_URL = re.compile(r"\bpostgres(?:ql)?(?:\+(\w+))?://(?=[\w$])")
STORE_URL_PREFIX = "postgresql+psycopg://"


def driverless_postgres_urls(content: str) -> list[str]:
    return [match.group(0) for match in POSTGRES_URL.finditer(content) if not match.group(1)]


def env_example_comment(example: str, name: str) -> str:
    """The comment lines right above `NAME=` in deploy/systemd/<example>.example."""
    lines = (SYSTEMD / f"{example}.example").read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
    comment: list[str] = []
    while index > 0 and lines[index - 1].startswith("#"):
        index -= 1
        comment.insert(0, lines[index])
    return "\n".join(comment)


@pytest.mark.parametrize(
    "planted",
    [
        "DAGSTER_POSTGRES_URL: postgresql://xmas:${POSTGRES_PASSWORD}@postgres:5432/dagster",
        "# Dagster's own database, e.g. postgres://xmas:PASSWORD@127.0.0.1:5432/dagster",
    ],
)
def test_the_driver_check_catches_a_url_without_one(planted: str) -> None:
    assert driverless_postgres_urls(planted)


def test_every_dagster_postgres_url_names_the_psycopg2_driver() -> None:
    dagster_prefix = topology.DAGSTER_POSTGRES_SCHEME + "://"
    assert dagster_prefix == "postgresql+psycopg2://"
    # Compose: each service's value (Dagster's URL vs the store's, psycopg 3).
    for name in APP_SERVICES:
        env = service(name)["environment"]
        if "DAGSTER_POSTGRES_URL" in env:
            assert env["DAGSTER_POSTGRES_URL"].startswith(dagster_prefix), name
        if "XMAS_DATABASE_URL" in env:
            assert env["XMAS_DATABASE_URL"].startswith(STORE_URL_PREFIX), name
    # The VM's env example gives the form in the comment above each variable.
    assert dagster_prefix in env_example_comment("dagster.env", "DAGSTER_POSTGRES_URL")
    for example in ("pipeline.env", "intake.env", "store-migrate.env"):
        assert STORE_URL_PREFIX in env_example_comment(example, "XMAS_DATABASE_URL")
    # Helm: the chart builds the URL from its parts, with this scheme.
    assert helm()["postgresql"]["postgresqlScheme"] == topology.DAGSTER_POSTGRES_SCHEME
    # Anywhere in the kit: no URL without a driver, and a line about Dagster's URL uses psycopg2.
    for path in deploy_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}"
            assert not driverless_postgres_urls(line), where
            if re.search(r"DAGSTER_POSTGRES_URL|postgres_url", line):
                drivers = {match.group(1) for match in POSTGRES_URL.finditer(line)}
                assert drivers <= {"psycopg2"}, where


# -- no literal secrets anywhere ---------------------------------------------------------


@pytest.mark.parametrize(
    "planted",
    [
        "XMAS_UI_PASSWORD_HASH='$2a$14$" + "a" * 53 + "'",
        "RESEND_API_KEY=re_" + "Ab3" * 8,
        "RESEND_WEBHOOK_SECRET: whsec_" + "c2VjcmV0" * 4,
        "DAGSTER_POSTGRES_URL=postgresql+psycopg2://xmas:" + "hunter2hunter2" + "@db:5432/dagster",
        "XMAS_ALERT_WEBHOOK_URL=https://hooks.slack.com/services/" + "T000/B000/XXXX",
        "postgresqlPassword: " + "s3cr3tPassw0rd!x",
        "AWS_ACCESS_KEY_ID=AKIA" + "ABCDEFGHIJKLMNOP",
    ],
)
def test_the_secret_check_catches_a_planted_secret(planted: str) -> None:
    assert literal_secrets(planted)


def test_no_deploy_file_holds_a_literal_secret() -> None:
    files = deploy_files()
    expected = {
        "Dockerfile",
        "docker-compose.yaml",
        "Caddyfile",
        "dagster.yaml",
        "workspace.yaml",
        "values.yaml",
        "intake.yaml",
        "store-migrate.yaml",
        "roles.sql",
    }
    assert expected <= {path.name for path in files}
    for path in files:
        found = literal_secrets(path.read_text(encoding="utf-8"))
        assert not found, f"{path.relative_to(ROOT)} holds {', '.join(found)}"


# -- deploy/dagster.yaml is a real instance ----------------------------------------------


def test_dagster_yaml_loads_as_a_postgres_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.launcher import DefaultRunLauncher
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    with postgres_database() as url:
        # dagster-postgres connects with psycopg2, named in the URL as the kit names it.
        dagster_url = f"{topology.DAGSTER_POSTGRES_SCHEME}://{url.split('://', 1)[1]}"
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_url)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            # Runs start as children of the code server: what the systemd unit's
            # KillMode and the compose inbox volume rely on.
            assert isinstance(instance.run_launcher, DefaultRunLauncher)
            assert instance.run_monitoring_enabled
            assert instance.run_retries_enabled
            pools = instance.get_concurrency_config().pool_config
            assert pools.default_pool_limit == 1
            # The storage really is there: a run written is read back.
            run = instance.create_run_for_job(dg.GraphDefinition("probe").to_job())
            assert instance.get_run_by_id(run.run_id) is not None
