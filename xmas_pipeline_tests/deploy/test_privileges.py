"""Least privilege in every shipped setup, held against ONE table of who may hold what.

`topology.PROCESS_ENV` says which variables (and so which secrets) each process may get,
`topology.PROCESS_DB_ROLES` which PostgreSQL role each of its database URLs logs in as. Every
setup under deploy/ (compose, the systemd units and their env files, the Helm values, the
Kubernetes manifests) is read here process by process and checked against that table: a
process given a secret outside its row, or a URL logging in as another role, fails. Also:
one system user per systemd unit and their sandboxing, no capability in any container, and
no Kubernetes API token where a pod does not need one.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from xmas_pipeline_tests.deploy.test_deploy_files import (
    ALL_UNITS,
    APP_SERVICES,
    MIGRATE_UNIT,
    STORE_MIGRATE_UNIT,
    SYSTEMD,
    UNIT_ENV_FILES,
    UNITS,
    helm,
    helm_code_server,
    load_yaml_documents,
    parse_env_file,
    parse_unit,
    service,
    unit,
    unit_environment,
    workspace_env,
)
from xmas_pipeline_tests.support import topology

# The user part of a PostgreSQL URL: scheme://USER:...
URL_USER = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://([^:@/]+)[:@]")
DB_URL_VARIABLES = ("DAGSTER_POSTGRES_URL", "XMAS_DATABASE_URL")


def violations(process: str, env: set[str], roles: dict[str, str]) -> list[str]:
    """What `process` holds beyond its row of the table: variables (secrets above all) it
    may not see, and database URLs that log in as another role than its own."""
    allowed = set(topology.PROCESS_ENV[process])
    if process in ("webserver", "daemon"):
        allowed |= workspace_env()
    found = [
        f"{process} gets {name}{' (a secret)' if name in topology.SECRET_ENV else ''}"
        for name in sorted(env - allowed)
    ]
    expected_roles = topology.PROCESS_DB_ROLES[process]
    for variable, role in sorted(roles.items()):
        if expected_roles.get(variable) != role:
            found.append(f"{process}'s {variable} logs in as {role}")
    return found


def url_user(value: str) -> str:
    match = URL_USER.match(value)
    assert match, f"not a PostgreSQL URL with a user: {value[:40]}"
    return match.group(1)


# -- the table itself --------------------------------------------------------------------


def test_the_table_names_every_process_and_keeps_the_intake_away_from_api_keys() -> None:
    assert set(topology.PROCESS_ENV) == set(topology.PROCESS_DB_ROLES) == set(APP_SERVICES)
    intake = set(topology.PROCESS_ENV["intake"])
    for never in ("RESEND_API_KEY", "CALCOM_API_KEY", "NOTION_TOKEN", "DAGSTER_POSTGRES_URL"):
        assert never not in intake
    for dagster_only in ("webserver", "daemon", "migrate"):
        assert set(topology.PROCESS_ENV[dagster_only]) == set(topology.DAGSTER_ENV)
    # Each database URL a process gets has its role; no two kinds of process share a
    # store role, and Dagster's role never opens the store.
    for process, env in topology.PROCESS_ENV.items():
        urls = {name for name in env if name in DB_URL_VARIABLES}
        assert urls == set(topology.PROCESS_DB_ROLES[process]), process
    store_roles = {
        process: roles["XMAS_DATABASE_URL"]
        for process, roles in topology.PROCESS_DB_ROLES.items()
        if "XMAS_DATABASE_URL" in roles
    }
    assert len(set(store_roles.values())) == len(store_roles)
    assert "xmas_dagster" not in store_roles.values()


@pytest.mark.parametrize(
    ("process", "env", "roles"),
    [
        ("intake", {"XMAS_DATABASE_URL", "RESEND_API_KEY"}, {"XMAS_DATABASE_URL": "xmas_intake"}),
        ("intake", {"XMAS_DATABASE_URL"}, {"XMAS_DATABASE_URL": "xmas_pipeline"}),
        ("webserver", {"DAGSTER_POSTGRES_URL", "NOTION_TOKEN"}, {}),
        ("daemon", {"DAGSTER_POSTGRES_URL"}, {"DAGSTER_POSTGRES_URL": "xmas_owner"}),
    ],
)
def test_the_check_catches_a_process_holding_more_than_its_row(
    process: str, env: set[str], roles: dict[str, str]
) -> None:
    assert violations(process, env, roles)


# -- Docker Compose ----------------------------------------------------------------------


@pytest.mark.parametrize("process", sorted(APP_SERVICES))
def test_compose_gives_each_process_its_row_and_its_role(process: str) -> None:
    environment = service(process)["environment"]
    roles = {
        name: url_user(str(environment[name])) for name in DB_URL_VARIABLES if name in environment
    }
    assert violations(process, set(environment), roles) == []
    assert set(roles) == set(topology.PROCESS_DB_ROLES[process])


@pytest.mark.parametrize("process", sorted(APP_SERVICES))
def test_compose_containers_hold_no_capability(process: str) -> None:
    spec = service(process)
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    assert not spec.get("cap_add") and not spec.get("privileged")


def test_compose_intake_writes_only_its_volume() -> None:
    intake = service("intake")
    assert intake["read_only"] is True
    assert [volume.split(":")[1] for volume in intake["volumes"]] == ["/var/lib/xmas"]


def test_compose_postgres_makes_the_roles_and_no_process_logs_in_as_superuser() -> None:
    postgres = service("postgres")
    assert postgres["environment"]["POSTGRES_USER"] == "postgres"
    assert any(volume.startswith("./postgres/roles.sql:") for volume in postgres["volumes"])
    roles_sql = (SYSTEMD.parent / "postgres" / "roles.sql").read_text(encoding="utf-8")
    for roles in topology.PROCESS_DB_ROLES.values():
        for role in roles.values():
            assert f"'{role}'" in roles_sql, f"roles.sql does not make {role}"
    for process in APP_SERVICES:
        for name, value in service(process)["environment"].items():
            if name in DB_URL_VARIABLES:
                assert url_user(str(value)) != "postgres", process


# -- systemd -----------------------------------------------------------------------------

# What each unit may write (ProtectSystem=strict makes everything else read-only).
WRITABLE = {
    "xmas-code-server.service": {"/var/lib/xmas", "/opt/dagster/dagster_home"},
    "xmas-webserver.service": {"/opt/dagster/dagster_home"},
    "xmas-daemon.service": {"/opt/dagster/dagster_home"},
    "xmas-intake.service": {"/var/lib/xmas/inbox"},
    MIGRATE_UNIT: {"/opt/dagster/dagster_home"},
    STORE_MIGRATE_UNIT: set(),
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
}


def example_env(name: str) -> dict[str, str]:
    return parse_env_file(SYSTEMD / f"{name}.example")


def example_role(example: str, variable: str) -> str:
    """The role the comment above `variable=` in an env example tells the operator to use."""
    lines = (SYSTEMD / f"{example}.example").read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{variable}="))
    comment = []
    while index > 0 and lines[index - 1].startswith("#"):
        index -= 1
        comment.append(lines[index])
    users = {url_user(m) for m in re.findall(r"postgres(?:ql)?\+\w+://\S+", " ".join(comment))}
    assert len(users) == 1, f"{example}: {variable} names {users or 'no role'}"
    return users.pop()


@pytest.mark.parametrize("unit_name", sorted(ALL_UNITS))
def test_systemd_unit_gets_its_row_and_its_role(unit_name: str) -> None:
    process, _ = ALL_UNITS[unit_name]
    env: set[str] = set(unit_environment(unit(unit_name).get("Environment", [])))
    roles: dict[str, str] = {}
    for example in UNIT_ENV_FILES[unit_name]:
        variables = example_env(example)
        env |= set(variables)
        for name in DB_URL_VARIABLES:
            if name in variables:
                roles[name] = example_role(example, name)
    assert violations(process, env, roles) == []
    assert set(roles) == set(topology.PROCESS_DB_ROLES[process])


def test_systemd_env_files_are_not_shared_across_privilege_levels() -> None:
    # The intake's file and the store owner's file are each read by one unit only.
    readers: dict[str, set[str]] = {}
    for unit_name, files in UNIT_ENV_FILES.items():
        for name in files:
            readers.setdefault(name, set()).add(unit_name)
    assert readers["intake.env"] == {"xmas-intake.service"}
    assert readers["store-migrate.env"] == {STORE_MIGRATE_UNIT}
    assert readers["pipeline.env"] == {"xmas-code-server.service"}


@pytest.mark.parametrize("unit_name", sorted(ALL_UNITS))
def test_systemd_unit_is_sandboxed(unit_name: str) -> None:
    section = unit(unit_name)
    for key, value in HARDENING.items():
        assert section.get(key) == [value], f"{unit_name}: {key}={value}"
    writable = {path for value in section.get("ReadWritePaths", []) for path in value.split()}
    assert writable == WRITABLE[unit_name]
    # Nothing the unit could use to get around the sandbox.
    assert "AmbientCapabilities" not in section
    assert "PermissionsStartOnly" not in section
    assert section.get("User") != ["root"]


def sysusers() -> dict[str, set[str]]:
    """deploy/systemd/xmas.sysusers.conf: kind ('u' or 'g') -> names."""
    entries: dict[str, set[str]] = {"u": set(), "g": set()}
    for raw in (SYSTEMD / "xmas.sysusers.conf").read_text(encoding="utf-8").splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            kind, name, *_ = shlex.split(raw)
            entries[kind].add(name)
    return entries


def tmpfiles() -> dict[str, tuple[str, str, str]]:
    """deploy/systemd/xmas.tmpfiles.conf: path -> (mode, user, group)."""
    found = {}
    for raw in (SYSTEMD / "xmas.tmpfiles.conf").read_text(encoding="utf-8").splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            _, path, mode, user, group, _ = raw.split()
            found[path] = (mode, user, group)
    return found


def test_systemd_every_long_running_unit_has_a_user_of_its_own() -> None:
    users = {name: unit(name)["User"] for name in UNITS}
    flat = [user for (user,) in users.values()]
    assert len(set(flat)) == len(flat), users
    assert not {"root", "0", "xmas"} & set(flat)
    declared = sysusers()
    assert set(flat) <= declared["u"]
    for name in UNITS:
        for group in " ".join(unit(name).get("SupplementaryGroups", [])).split():
            assert group in declared["g"], f"{name}: {group} is not declared"


def test_systemd_inbox_is_shared_through_a_group_only_intake_and_code_server_hold() -> None:
    mode, owner, group = tmpfiles()["/var/lib/xmas/inbox"]
    assert owner == unit("xmas-intake.service")["User"][0]
    assert mode == "2770"  # new day folders keep the group
    members = {
        name
        for name in ALL_UNITS
        if group in " ".join(unit(name).get("SupplementaryGroups", [])).split()
    }
    assert members == {"xmas-intake.service", "xmas-code-server.service"}
    # XMAS_HOME itself: only its owner (the code server) may list or write it.
    home_mode, home_owner, _ = tmpfiles()["/var/lib/xmas"]
    assert home_owner == unit("xmas-code-server.service")["User"][0]
    assert home_mode == "0711"


def test_systemd_intake_may_not_read_dagster_or_pipeline_files() -> None:
    section = unit("xmas-intake.service")
    assert "xmas-dagster" not in " ".join(section.get("SupplementaryGroups", []))
    assert "DAGSTER_HOME" not in unit_environment(section.get("Environment", []))


# -- Kubernetes --------------------------------------------------------------------------


def manifests(relative: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in load_yaml_documents(relative)}


def pod_spec(relative: str) -> dict[str, Any]:
    documents = manifests(relative)
    workload = documents.get("Deployment") or documents["Job"]
    return workload["spec"]["template"]["spec"]


def secret_refs(spec: dict[str, Any]) -> dict[str, str]:
    (container,) = spec["containers"]
    assert "envFrom" not in container
    return {item["name"]: item["valueFrom"]["secretKeyRef"]["name"] for item in container["env"]}


@pytest.mark.parametrize(
    ("relative", "process"),
    [("k8s/intake.yaml", "intake"), ("k8s/store-migrate.yaml", "store-migrate")],
)
def test_k8s_pod_reads_its_row_from_a_secret_of_its_own(relative: str, process: str) -> None:
    spec = pod_spec(relative)
    refs = secret_refs(spec)
    assert violations(process, set(refs), {}) == []
    assert set(refs) == set(topology.PROCESS_ENV[process])
    (secret,) = set(refs.values())
    # No other process reads that Secret.
    assert secret not in {ref["name"] for ref in helm_code_server()["envSecrets"]}
    assert secret != helm()["global"]["postgresqlSecretName"]
    other = "k8s/store-migrate.yaml" if process == "intake" else "k8s/intake.yaml"
    assert secret not in set(secret_refs(pod_spec(other)).values())


@pytest.mark.parametrize("relative", ["k8s/intake.yaml", "k8s/store-migrate.yaml"])
def test_k8s_pod_has_its_own_service_account_without_an_api_token(relative: str) -> None:
    documents = manifests(relative)
    account = documents["ServiceAccount"]
    spec = pod_spec(relative)
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_k8s_service_accounts_are_distinct() -> None:
    names = [
        pod_spec(r)["serviceAccountName"] for r in ("k8s/intake.yaml", "k8s/store-migrate.yaml")
    ]
    assert len(set(names)) == len(names)


def test_helm_dagster_processes_get_only_dagsters_role_and_secret() -> None:
    values = helm()
    # The chart's processes log in to Dagster's database as its role, with its own Secret.
    assert values["postgresql"]["postgresqlUsername"] == "xmas_dagster"
    for process in ("webserver", "daemon", "migrate"):
        assert topology.PROCESS_DB_ROLES[process] == {"DAGSTER_POSTGRES_URL": "xmas_dagster"}
    for component in ("dagsterWebserver", "dagsterDaemon"):
        for key in ("env", "envConfigMaps", "envSecrets"):
            assert not values[component].get(key), f"{component}.{key}"
    assert helm_code_server()["envSecrets"] == [{"name": "xmas-pipeline-env"}]


def test_helm_values_document_the_code_servers_secret_as_its_row() -> None:
    # The comment that tells the operator what to put in xmas-pipeline-env names exactly
    # the code server's pipeline variables: nothing of the intake's own.
    text = (SYSTEMD.parent / "helm" / "values.yaml").read_text(encoding="utf-8")
    header = text.split("global:", 1)[0]
    named = set(re.findall(r"\b(?:XMAS|RESEND|CALCOM|NOTION)_[A-Z_]+\b", header))
    row = set(topology.PROCESS_ENV["code-server"]) - set(topology.DAGSTER_ENV)
    assert row <= named
    intake_only = set(topology.INTAKE_ENV) - set(topology.PROCESS_ENV["code-server"])
    assert intake_only and not intake_only & named


def test_deploy_yaml_files_parse() -> None:
    for path in sorted(Path(SYSTEMD.parent).rglob("*.yaml")):
        assert list(yaml.safe_load_all(path.read_text(encoding="utf-8"))), path
    assert parse_unit(SYSTEMD / "xmas-intake.service")["Service"]
