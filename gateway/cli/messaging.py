"""`casetrail unit ...`, `casetrail nats ...`, `casetrail relay ...` (registered in
`gateway.cli.main`).

    casetrail unit add --unit ID --name NAME --type TYPE --street S [--out FILE]
    casetrail unit rotate-key --unit ID [--out FILE]
    casetrail unit list [--json]
    casetrail unit listen --unit ID --key FILE [--inbox FILE] [--api URL] [--token-file FILE]
    casetrail nats config [--san HOST]... [--print]
    casetrail nats config --cluster [N] [--host HOST]... [--port P] [--route-port P] [--san HOST]...
    casetrail nats serve [--node NAME]
    casetrail relay run [--batch-size N] [--poll SECONDS] [--reminder-interval SECONDS]
    casetrail relay status [--json]
    casetrail relay remind [--today DATE]

Long-running commands stop on SIGTERM or SIGINT. Failures are one line on stderr and exit 2.
See docs/messaging.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from eventsourcing.persistence import PersistenceError

from domain.application import CaseTrail
from domain.errors import DomainError
from domain.quarters import start_of_day
from domain.units import UNIT_KINDS, RegisterUnit
from gateway import bootstrap, keyring, lifeline, logs
from gateway.messaging.broker import (
    ENV_URL,
    BrokerProblem,
    EmbeddedBroker,
    nats_server_binary,
)
from gateway.messaging.broker_config import (
    DEFAULT_ROUTE_PORT,
    NatsConfigProblem,
    NatsLayout,
    cluster_nodes,
    read_cluster,
)
from gateway.messaging.registry import (
    apply_broker_config,
    register_unit,
    rotate_unit_keys,
    write_broker_config,
    write_cluster,
)
from gateway.messaging.relay import RelayOptions
from gateway.messaging.scheduler import DeadlineScheduler
from gateway.messaging.sealing import CredentialsProblem, UnitCredentials
from gateway.messaging.unit_client import ApiReporter, Inbox, ReportFailed, UnitClient
from gateway.settings import Settings

log = logs.get_logger("casetrail.messaging")

ENV_UNIT_TOKEN = "CASETRAIL_UNIT_TOKEN"  # noqa: S105 (a variable's name)


class MessagingProblem(click.ClickException):
    exit_code = 2


@contextmanager
def _opened(settings: Settings | None = None) -> Iterator[tuple[Settings, CaseTrail]]:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    application = bootstrap.open_application(settings)
    try:
        yield settings, application
    except (DomainError, CredentialsProblem, NatsConfigProblem, BrokerProblem) as exc:
        raise MessagingProblem(str(exc)) from None
    except FileExistsError as exc:
        raise MessagingProblem(f"{exc.filename} exists already; choose another --out") from None
    except PersistenceError as exc:
        raise MessagingProblem(f"the store failed: {type(exc).__name__}: {exc}") from None
    finally:
        application.close()


def _run_until_signalled(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


# --- units ----------------------------------------------------------------------------------------


@click.group(help="The unit registry: member units that receive sealed notices.")
def unit() -> None:
    pass


@unit.command("add", help="Register a unit and write its credentials file (mode 0600).")
@click.option("--unit", "unit_id", required=True, help="the unit's code, as in tokens")
@click.option("--name", required=True, help="the unit's Chinese name, e.g. 城关派出所")
@click.option("--type", "kind", required=True, type=click.Choice(UNIT_KINDS))
@click.option("--street", required=True, help="the street's code, e.g. chengguan-street")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="where to write the credentials (default: ./<unit>.credentials.pem)",
)
def unit_add(unit_id: str, name: str, kind: str, street: str, out: Path | None) -> None:
    command = RegisterUnit(unit_id=unit_id, name=name, type=kind, street=street)
    target = out or Path(f"{command.unit_id}.credentials.pem")
    with _opened() as (settings, application):
        registered = register_unit(settings, application, command, target)
        outcome = apply_broker_config(settings, application, settings.nats)
    click.echo(f"registered unit {registered.unit_id} ({registered.name}, {registered.type})")
    click.echo(f"credentials written to {target} (mode 0600): hand it to the unit's operator")
    click.echo(outcome)


@unit.command("rotate-key", help="New keys for a unit; the old ones stop working.")
@click.option("--unit", "unit_id", required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
def unit_rotate(unit_id: str, out: Path | None) -> None:
    target = out or Path(f"{unit_id}.credentials.pem")
    with _opened() as (settings, application):
        rotated = rotate_unit_keys(settings, application, unit_id, target)
        outcome = apply_broker_config(settings, application, settings.nats)
    click.echo(f"unit {rotated.unit_id}: keys rotated (version {rotated.key_version})")
    click.echo(f"new credentials written to {target} (mode 0600)")
    click.echo(outcome)


@unit.command("list", help="The registered units (no keys).")
@click.option("--json", "as_json", is_flag=True)
def unit_list(as_json: bool) -> None:
    with _opened() as (_, application):
        units = [u.describe() for u in application.units()]
    if as_json:
        click.echo(json.dumps(units, ensure_ascii=False, indent=2))
        return
    for found in units:
        click.echo(
            f"{found['unit_id']:<32} {found['type']:<24} {found['street']:<24} {found['name']}"
        )


@unit.command("listen", help="Receive the unit's sealed notices into a local inbox.")
@click.option("--unit", "unit_id", required=True)
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the unit's credentials file from `unit add`",
)
@click.option(
    "--inbox",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON-lines inbox (default: ./<unit>.inbox.jsonl)",
)
@click.option("--api", default="http://127.0.0.1:8000", show_default=True)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"the unit's bearer token (or {ENV_UNIT_TOKEN})",
)
@click.option(
    "--service-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="the service's signing public key (default: the one in the credentials file)",
)
def unit_listen(
    unit_id: str,
    key_file: Path,
    inbox: Path | None,
    api: str,
    token_file: Path | None,
    service_key: Path | None,
) -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    try:
        credentials = UnitCredentials.load(key_file)
    except CredentialsProblem as exc:
        raise MessagingProblem(str(exc)) from None
    if credentials.unit_id != unit_id:
        raise MessagingProblem(
            f"{key_file} holds the credentials of unit {credentials.unit_id}, not {unit_id}"
        )
    token = _unit_token(settings, token_file)
    pinned = keyring.load_public_key(service_key, "service key") if service_key else None
    client = UnitClient(
        credentials,
        key_file,
        inbox=Inbox(inbox or Path(f"{unit_id}.inbox.jsonl")),
        reporter=ApiReporter(api, token),
        nats_settings=settings.nats,
        service_key=pinned,
    )
    _run_until_signalled(client.run)


@unit.command(
    "inbox", help="The unit's assignments and their states (签收, 退回, 办结), from the API."
)
@click.option("--api", default="http://127.0.0.1:8000", show_default=True)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"a unit member's bearer token (or {ENV_UNIT_TOKEN})",
)
@click.option("--on", "on", default=None, help="judge deadlines on this day (YYYY-MM-DD)")
@click.option("--json", "as_json", is_flag=True, help="print the API's answer as JSON")
def unit_inbox(api: str, token_file: Path | None, on: str | None, as_json: bool) -> None:
    """The same states as `GET /v1/inbox`: what the unit's client shows a person."""
    settings = Settings.from_env()
    token = _unit_token(settings, token_file)
    try:
        page = ApiReporter(api, token).inbox(on)
    except ReportFailed as exc:
        raise MessagingProblem(str(exc)) from None
    if as_json:
        click.echo(json.dumps(page, ensure_ascii=False, indent=2))
        return
    items = page.get("items", [])
    click.echo(f"unit {page.get('unit')}: {len(items)} assignment(s) on {page.get('on')}")
    for item in items:
        # .get: an answer of another server version prints what it has, never a traceback.
        click.echo(
            f"{item.get('state', '?'):<16} due {item.get('due_on')}  "
            f"{item.get('function_label')}  case {item.get('case_id')}  "
            f"assignment {item.get('assignment_id')}"
        )


def _unit_token(settings: Settings, token_file: Path | None) -> str:
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode & 0o777
            text = token_file.read_text().strip()
        except FileNotFoundError:
            raise MessagingProblem(f"no token file at {token_file}") from None
        if mode & 0o077:
            raise MessagingProblem(
                f"{token_file} is readable by others (mode {mode:o}); run `chmod 600 {token_file}`"
            )
        return text
    token = settings.unit_token.get_secret_value().strip() if settings.unit_token else ""
    if not token:
        raise MessagingProblem(
            f"--token-file or {ENV_UNIT_TOKEN} is needed: a unit_member token of the unit "
            "(`casetrail token issue --role unit_member --unit ID`)"
        )
    return token


# --- the broker -----------------------------------------------------------------------------------


@click.group(help="The NATS broker: its config, TLS material, and the embedded server.")
def nats() -> None:
    pass


@nats.command("config", help="Write the broker config (one user per unit) and TLS material.")
@click.option("--san", multiple=True, help="another host name or IP for the server certificate")
@click.option(
    "--cluster",
    type=click.IntRange(3),
    is_flag=False,
    flag_value=3,
    default=None,
    help="write a config per node of a JetStream cluster of N nodes (odd, at least 3; "
    "--cluster alone: 3) under $CASETRAIL_HOME/nats/cluster/",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="with --cluster: the nodes' host, once for all or once per node in order "
    "(default: CASETRAIL_NATS_HOST)",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="with --cluster: the first node's client port; nodes on one host take the next ones "
    "(default: CASETRAIL_NATS_PORT)",
)
@click.option(
    "--route-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_ROUTE_PORT,
    show_default=True,
    help="with --cluster: the first node's route port, likewise",
)
@click.option("--print", "show", is_flag=True, help="also print the config")
def nats_config(
    san: tuple[str, ...],
    cluster: int | None,
    hosts: tuple[str, ...],
    port: int | None,
    route_port: int,
    show: bool,
) -> None:
    if cluster is None and (hosts or port is not None or route_port != DEFAULT_ROUTE_PORT):
        raise MessagingProblem("--host, --port and --route-port go with --cluster")
    with _opened() as (settings, application):
        if cluster is not None:
            nodes = cluster_nodes(
                cluster,
                hosts or (settings.nats_host,),
                port=port or settings.nats_port,
                route_port=route_port,
            )
            paths = write_cluster(settings, application, nodes, san)
        else:
            paths = [write_broker_config(settings, application, settings.nats, hosts=san)]
    layout = NatsLayout(settings.home)
    if cluster is None:
        click.echo(f"broker config written to {paths[0]}")
    else:
        for node, path in zip(nodes, paths, strict=True):
            click.echo(
                f"node {node.name}: {path} (clients {node.client_url}, routes {node.route_url})"
            )
    click.echo(f"TLS material in {layout.tls} (CA: {layout.ca_cert})")
    if cluster is not None:
        url = ",".join(node.client_url for node in nodes)
        click.echo(f"{ENV_URL}={url}")
        click.echo(f"CASETRAIL_NATS_REPLICAS={min(3, cluster)}")
    if show:
        for path in paths:
            click.echo(path.read_text())


@nats.command("serve", help="Run the embedded nats-server (or one cluster node) in the foreground.")
@click.option(
    "--node",
    help="run this node (e.g. n1) of the cluster `nats config --cluster` wrote, with its "
    "config as it stands",
)
def nats_serve(node: str | None) -> None:
    settings = Settings.from_env()
    nats_settings = settings.nats
    if node is not None:
        _serve_node(settings, node)
        return
    if not nats_settings.embedded:
        raise MessagingProblem(f"{ENV_URL} is set: the broker is external, nothing to serve here")
    with _opened(settings) as (settings, application):
        write_broker_config(settings, application, nats_settings)
    broker = EmbeddedBroker(
        NatsLayout(settings.home),
        host=nats_settings.host,
        port=nats_settings.port,
        binary=nats_settings.binary,
    )
    try:
        broker.start()
    except BrokerProblem as exc:
        raise MessagingProblem(str(exc)) from None
    click.echo(f"nats-server on tls://{nats_settings.host}:{nats_settings.port}")

    async def wait(stop: asyncio.Event) -> None:
        while not stop.is_set() and broker.running:
            await asyncio.sleep(0.2)

    try:
        _run_until_signalled(wait)
    finally:
        broker.stop()


def _serve_node(settings: Settings, name: str) -> None:
    """One cluster node, as `ops/casetrail-nats@.service` runs it: this process becomes the
    node's nats-server (exec), so that systemd's SIGHUP (`systemctl reload`) and SIGTERM reach
    the server itself. The config is run as it stands: it is written where the registry is
    (`nats config --cluster`, `unit add`) and copied here, so a broker host needs neither the
    store nor the service's keys. The node waits for its peers by itself."""
    layout = NatsLayout(settings.home)
    try:
        cluster = read_cluster(layout)
        binary = nats_server_binary(settings.nats_server)
    except (NatsConfigProblem, BrokerProblem) as exc:
        raise MessagingProblem(str(exc)) from None
    if cluster is None:
        raise MessagingProblem(
            f"no cluster is configured under {layout.cluster_dir}: run `casetrail nats config "
            "--cluster` where the registry is, and copy nats/ to this host"
        )
    nodes, _ = cluster
    if name not in {n.name for n in nodes}:
        names = ", ".join(n.name for n in nodes)
        raise MessagingProblem(f"no node {name} in the cluster (its nodes: {names})")
    config = layout.node_config(name)
    if not config.exists():
        raise MessagingProblem(
            f"no config for node {name} at {config}: copy it from the "
            "host that ran `casetrail nats config --cluster`"
        )
    layout.node_store_dir(name).mkdir(parents=True, exist_ok=True, mode=0o700)
    os.execv(binary, [str(binary), "-c", str(config)])  # noqa: S606 (our binary, our config)


# --- the relay ------------------------------------------------------------------------------------


@click.group(help="The relay: publishes sealed notices from the event store to the broker.")
def relay() -> None:
    pass


@relay.command("run", help="Follow the event store and publish until SIGTERM/SIGINT.")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000))
@click.option(
    "--poll",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.001, 60),
    help="seconds between looks when no commit woke the relay (it wakes on NOTIFY on "
    "PostgreSQL, on PRAGMA data_version on SQLite)",
)
@click.option(
    "--reminder-interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0),
    help="seconds between scans for missed deadlines (0: none)",
)
# Given by `casetrail serve` to its child (gateway.supervisor), not by people: stop should it die.
@click.option("--supervised-by", type=click.IntRange(1), hidden=True)
def relay_run(
    batch_size: int, poll: float, reminder_interval: float, supervised_by: int | None
) -> None:
    options = RelayOptions(
        batch_size=batch_size, poll_seconds=poll, reminder_interval=reminder_interval
    )
    with _opened() as (settings, application):
        try:
            worker = bootstrap.open_relay(settings, application, options)
        except BrokerProblem as exc:
            raise MessagingProblem(str(exc)) from None
        log.info("relay_started", position=worker.position(), lag=worker.lag())
        lifeline.exit_with(supervised_by)
        _run_until_signalled(worker.run)
        log.info("relay_stopped", position=worker.position(), published=worker.stats.published)


@relay.command("status", help="The relay's position in the event store and its lag.")
@click.option("--json", "as_json", is_flag=True)
def relay_status(as_json: bool) -> None:
    with _opened() as (settings, application):
        worker = bootstrap.open_relay(settings, application)
        found = {"position": worker.position(), "lag": worker.lag()}
    text = f"position {found['position']}, lag {found['lag']}"
    click.echo(json.dumps(found) if as_json else text)


@relay.command("remind", help="Store the deadline facts due now (as `deadlines scan`).")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="judge at the local midnight that starts this day (default: now)",
)
def relay_remind(today: Any) -> None:
    now = start_of_day(today.date()) if today is not None else None
    with _opened() as (_, application):
        stored = DeadlineScheduler(application).scan(now)
    click.echo(f"{len(stored)} deadline fact(s) stored")
