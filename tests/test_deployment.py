"""The production layout runs the commands tested here: the Procfile's processes for real (the
release step, gunicorn serving the admin and its static files, qcluster workers), and
docker-compose.yml and the Dockerfile read against the Procfile, since no Docker engine runs here.
At work, with Redis as the broker and two workers, web tells monitors (the compose health check,
a Prometheus scrape) how the sync stands.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import runpy
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from tests.helpers import free_port, wait_for
from tests.processes import (
    PROJECT,
    ZOHO_SETTINGS,
    run_manage,
    run_python,
    stop_process_group,
)
from tests.samples import Samples, family, samples_of
from tests.samples import value as sample_value

# The only commands the layout may run: each is run below.
TESTED_COMMANDS = {
    "release": "deploy/release.sh",
    "web": "gunicorn --config deploy/gunicorn.conf.py circletel.wsgi",
    "worker": "python manage.py qcluster",
}
STRONG_KEY = "k3y-" + "".join(chr(65 + (i * 11) % 26) for i in range(60))
# What the TLS proxy in front adds to every request (compose runs with DJANGO_BEHIND_TLS_PROXY).
PROXY = {"X-Forwarded-Proto": "https"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$")
REFERENCE = re.compile(r"\$\{(\w+)[^}]*\}")


def procfile() -> dict[str, str]:
    """The Procfile's processes: name -> command."""
    processes = {}
    for line in (PROJECT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


def compose() -> dict[str, Any]:
    return yaml.safe_load((PROJECT / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    """deploy/env.example's variables: name -> value as written."""
    pairs = {}
    for line in (PROJECT / "deploy" / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def words(command: str | list[str]) -> list[str]:
    """A command as compose runs it: a string is split as a shell would, without a shell."""
    return shlex.split(command) if isinstance(command, str) else list(command)


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's `${NAME...}` references replaced by the variables' values."""
    return REFERENCE.sub(lambda found: variables[found.group(1)], value)


# --- What the files say ---------------------------------------------------------------------------


def test_the_procfile_runs_exactly_the_commands_tested_here():
    assert procfile() == TESTED_COMMANDS


def test_compose_runs_the_procfile_commands_with_postgres_and_redis():
    services = compose()["services"]

    assert {"postgres", "redis", "release", "web", "worker"} <= set(services)
    for name, command in procfile().items():
        assert words(services[name]["command"]) == shlex.split(command), name
    for name in ("release", "web", "worker"):
        service = services[name]
        assert service["env_file"] == "deploy/.env"
        assert service["environment"]["DJANGO_ENV"] == "production"
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["DATABASE_URL"].endswith("@postgres:5432/billing_sync")
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["release"] == {
            "condition": "service_completed_successfully"
        }
    assert services["release"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_compose_workers_scale_and_web_is_checked_through_healthz():
    services = compose()["services"]
    worker, web = services["worker"], services["web"]

    # `--scale worker=3` needs a service with no fixed name and no published port.
    assert "container_name" not in worker
    assert "ports" not in worker
    # deploy/healthcheck.py asks for /healthz unless told otherwise.
    assert web["healthcheck"]["test"] == ["CMD", "python", "deploy/healthcheck.py"]
    assert web["ports"] == ["127.0.0.1:8000:8000"]


def test_compose_and_the_env_example_hold_no_secret():
    services = compose()["services"]
    example = env_example()

    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(variable):
                assert REFERENCE.fullmatch(value), f"{name}: {variable} is not a ${{reference}}"
            password = urlsplit(value).password if "://" in value else None
            if password is not None:
                assert REFERENCE.fullmatch(password), f"{name}: {variable} holds a password"
    secrets = [name for name in example if SECRET_NAME.search(name)]
    assert "DJANGO_SECRET_KEY" in secrets
    assert "POSTGRES_PASSWORD" in secrets
    assert {name: example[name] for name in secrets} == dict.fromkeys(secrets, "")
    # Every variable it names is read somewhere (a typo would be silently ignored).
    readers = "".join(
        (PROJECT / path).read_text()
        for path in ("circletel/settings.py", "deploy/gunicorn.conf.py", "docker-compose.yml")
    )
    assert [name for name in example if name not in readers] == []


def test_the_image_runs_the_procfile_web_command_as_a_user_with_static_files_collected():
    lines = [
        line.strip()
        for line in (PROJECT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    instructions = [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines]
    runs = [argument for keyword, argument in instructions if keyword == "RUN"]
    users = [argument for keyword, argument in instructions if keyword == "USER"]
    cmd = [argument for keyword, argument in instructions if keyword == "CMD"]

    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert any("pip install -r requirements.txt" in run for run in runs)
    assert any("manage.py collectstatic --noinput" in run for run in runs)
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert yaml.safe_load(cmd[-1]) == shlex.split(TESTED_COMMANDS["web"])
    ignored = (PROJECT / ".dockerignore").read_text().split()
    assert {".env", ".env.*", "**/.env", ".venv", "*.sqlite3"} <= set(ignored)


def test_gunicorn_takes_port_workers_and_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORT", "5123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_TIMEOUT", "45")

    config = runpy.run_path(str(PROJECT / "deploy" / "gunicorn.conf.py"))

    assert (config["bind"], config["workers"], config["timeout"]) == ("0.0.0.0:5123", 3, 45)
    assert config["accesslog"] == "-"
    # No query string (%(q)s, or inside %(r)s / %(U)s%(q)s), referer (%(f)s) or other header.
    assert re.findall(r"%\((\w+|\{[^}]*\}\w)\)s", config["access_log_format"]) == [
        "h",
        "m",
        "U",
        "H",
        "s",
        "B",
        "M",
        "a",
    ]


def test_gunicorn_refuses_a_bad_worker_count_naming_it(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "many")

    with pytest.raises(SystemExit, match="WEB_CONCURRENCY='many' is not a whole number"):
        runpy.run_path(str(PROJECT / "deploy" / "gunicorn.conf.py"))


def test_check_deploy_is_clean_with_the_compose_settings():
    example = env_example()
    variables = {**example, "POSTGRES_PASSWORD": "a-test-password"}
    web = compose()["services"]["web"]
    environment = {
        name: interpolate(str(value), variables) for name, value in web["environment"].items()
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "DJANGO_"))}

    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**base, **example, **environment, "DJANGO_SECRET_KEY": STRONG_KEY},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


# --- The commands, run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Production:
    """A released production set-up on a SQLite file: its folder and environment."""

    folder: Path
    env: dict[str, str]

    @property
    def database(self) -> Path:
        return self.folder / "db.sqlite3"


def run_command(name: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(TESTED_COMMANDS[name]),
        cwd=PROJECT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def start_command(name: str, env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """Start a Procfile command in a process group of its own, its output in `log`."""
    with log.open("w") as output:
        return subprocess.Popen(
            shlex.split(TESTED_COMMANDS[name]),
            cwd=PROJECT,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Production:
    """The release step run (twice: it must be idempotent) and the static files collected, with
    the production settings of deploy/env.example, on a SQLite file of this test's own."""
    folder = tmp_path_factory.mktemp("production")
    dropped = ("DATABASE_URL", "REDIS_URL", "Q_BROKER_URL", "PORT", "WEB_CONCURRENCY")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ZOHO_", "DJANGO_", "Q_")) and name not in dropped
    }
    env.update(
        # `python` and `gunicorn` as the Procfile names them: this interpreter's.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=STRONG_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_BEHIND_TLS_PROXY="true",
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        DJANGO_STATIC_ROOT=str(folder / "static"),
        WEB_CONCURRENCY="1",
        Q_WORKERS="1",
    )
    for _ in range(2):
        released = run_command("release", env)
        assert released.returncode == 0, released.stdout + released.stderr
    collected = run_manage("collectstatic", "--noinput", env=env)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    return Production(folder, env)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(port: int, path: str, headers: Mapping[str, str] = PROXY) -> Answer:
    """GET `path`, by default as the TLS proxy passes a request on."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=dict(headers))
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


@dataclass(frozen=True)
class WebServer:
    port: int
    log: Path


@pytest.fixture(scope="module")
def web(production: Production) -> Iterator[WebServer]:
    """The Procfile's web command, answering on a free port."""
    port = free_port()
    log = production.folder / "web.log"
    process = start_command("web", {**production.env, "PORT": str(port)}, log)

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"gunicorn stopped ({process.returncode}):\n{log.read_text()}")
        try:
            fetch(port, "/admin/login/")
        except OSError:
            return False
        return True

    try:
        wait_for(answers, f"gunicorn to answer (its log: {log})", timeout=30, interval=0.1)
        yield WebServer(port, log)
    finally:
        stop_process_group(process)


def test_the_release_step_migrates_and_puts_the_schedule_in_place_once(production):
    with sqlite3.connect(production.database) as connection:
        schedules = connection.execute("SELECT name FROM django_q_schedule").fetchall()
        applied = connection.execute(
            "SELECT COUNT(*) FROM django_migrations WHERE app = 'billing_sync'"
        ).fetchone()[0]

    assert schedules == [("zoho-sync",)]
    assert applied == len(list((PROJECT / "billing_sync" / "migrations").glob("0*.py")))


def test_web_serves_the_admin_and_its_static_files(web):
    page = fetch(web.port, "/admin/login/")
    stylesheet = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page.body)
    hashed = fetch(web.port, stylesheet.group(1).decode(), {**PROXY, "Accept-Encoding": "gzip"})
    plain = fetch(web.port, "/static/admin/css/base.css")

    assert page.status == 200
    assert b"csrfmiddlewaretoken" in page.body
    assert hashed.status == 200
    assert hashed.headers["Content-Type"].startswith("text/css")
    assert hashed.headers["Content-Encoding"] == "gzip"
    assert "immutable" in hashed.headers["Cache-Control"]
    assert plain.status == 200
    assert b"body" in plain.body


def test_web_logs_requests_without_query_strings(web):
    fetch(web.port, "/admin/login/?next=/admin/&q=someone%40example.co.za")
    time.sleep(0.2)  # the access log line is written after the answer

    log = web.log.read_text()
    assert '"GET /admin/login/ HTTP/1.1" 200' in log
    assert "someone" not in log


def test_plain_http_is_redirected_to_https(web):
    answer = fetch(web.port, "/admin/login/", {})

    assert answer.status == 301
    assert answer.headers["Location"] == f"https://127.0.0.1:{web.port}/admin/login/"


def test_the_worker_command_runs_queued_tasks(production, tmp_path):
    database = tmp_path / "worker.sqlite3"
    with sqlite3.connect(production.database) as source, sqlite3.connect(database) as copy:
        source.backup(copy)
        # This worker is here to show that it runs tasks, not to sync with a Zoho that is not here.
        copy.execute("DELETE FROM django_q_schedule")
    env = {**production.env, "DATABASE_URL": f"sqlite:///{database}"}
    process = start_command("worker", env, tmp_path / "worker.log")
    try:
        queued = run_manage(
            "shell",
            "-c",
            "from django_q.tasks import async_task; async_task('math.floor', 2.5)",
            env=env,
        )
        assert queued.returncode == 0, queued.stderr

        def task_done() -> tuple[int, int] | None:
            with sqlite3.connect(database) as connection:
                return connection.execute(
                    "SELECT success, result IS NOT NULL FROM django_q_task WHERE func = ?",
                    ("math.floor",),
                ).fetchone()

        done = wait_for(task_done, "the worker to run the task", timeout=30, interval=0.2)
    finally:
        stop_process_group(process)

    assert done == (1, 1), (tmp_path / "worker.log").read_text()


# --- The layout at work ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """A released set-up run as compose runs it: Redis as the broker, gunicorn, Zoho settings."""

    env: dict[str, str]
    folder: Path

    def health_check(self, port: int) -> subprocess.CompletedProcess[str]:
        """The compose health check of the web container (deploy/healthcheck.py)."""
        command = compose()["services"]["web"]["healthcheck"]["test"][1:]
        return run_python(*command[1:], env={**self.env, "PORT": str(port)}, cwd=PROJECT)


METRICS_TOKEN = "a-scrape-token-of-this-test"


@pytest.fixture
def layout(production, emulator, settings, redis_url, tmp_path) -> Layout:
    database = tmp_path / "layout.sqlite3"
    with sqlite3.connect(production.database) as source, sqlite3.connect(database) as copy:
        source.backup(copy)
    broker = f"{redis_url}/12"
    redis.Redis.from_url(broker).flushdb()
    zoho = {name: str(getattr(settings, name)) for name in ZOHO_SETTINGS}
    env = {
        **production.env,
        **zoho,
        "DATABASE_URL": f"sqlite:///{database}",
        "REDIS_URL": broker,
        "ZOHO_METRICS_TOKEN": METRICS_TOKEN,
    }
    return Layout(env, tmp_path)


def scrape(port: int) -> Samples:
    answer = fetch(port, "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status == 200, answer.body
    return samples_of(answer.body.decode())


def test_at_work_two_workers_sync_and_web_reports_health_and_metrics_to_monitors(layout, emulator):
    """The checklist's first steps on the compose layout: the demo customers, a plan, a first
    run of the sync as a one-off command, two workers; monitors ask web over plain HTTP."""
    port = free_port()
    web = start_command("web", {**layout.env, "PORT": str(port)}, layout.folder / "web.log")
    workers = [
        start_command("worker", layout.env, layout.folder / f"worker{n}.log") for n in range(2)
    ]
    try:
        for command in (["zoho_load_demo"], ["zoho_plan"], ["zoho_sync_customers"]):
            done = run_manage(*command, env=layout.env)
            assert done.returncode == 0, done.stdout + done.stderr
        wait_for(lambda: layout.health_check(port).returncode == 0, "web to report healthy")
        health = json.loads(fetch(port, "/healthz", {}).body)
        samples = scrape(port)
    finally:
        for worker in workers:
            stop_process_group(worker, grace=1)
    try:
        wait_for(lambda: layout.health_check(port).returncode == 1, "the workers' heartbeat to go")
        unhealthy = layout.health_check(port).stdout
        failing = json.loads(fetch(port, "/healthz", {}).body)["failing"]
    finally:
        stop_process_group(web)

    assert health["status"] == "ok", health
    assert health["summary"].startswith("OK: worker alive, last run ")
    assert sample_value(samples, "billing_sync_customers", status="synced") == 13
    assert sample_value(samples, "billing_sync_clusters_alive") == 2
    sent = sum(family(samples, "billing_sync_zoho_requests_total").values())
    assert sent == len(emulator.request_log)  # the plan's and the run's, as Zoho got them
    assert len(emulator.customers()) == 13
    assert unhealthy == "unhealthy: /healthz answered 503\n"
    assert failing == ["worker"]
