"""The secure profile: a SASL_SSL broker with ACLs and a TLS Redis with ACL users, locally.

``fleet infra up --secure`` runs them beside the plain development services, on their own
ports and under ``<var_dir>/secure/``: the project's own CA and server certificate
(openssl), one random password per principal, the broker's and Redis's configuration, and
one ``env/<role>.env`` file per Kafka role with the ``FLEET_*`` settings of its clients.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from fleet import services
from fleet.clients import confluent_config
from fleet.devices import write_mosquitto_auth
from fleet.errors import ServiceUnavailable
from fleet.identity import new_key
from fleet.security import (
    ADMIN,
    KAFKA_ROLES,
    REDIS_USER_OF_ROLE,
    REDIS_USERS,
    Grant,
    redis_acl_rules,
    role_grants,
)
from fleet.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka.admin import AclBinding

HOST = "127.0.0.1"
BROKER_CN = "broker"  # the broker's own principal on its mTLS controller listener
CERT_DAYS = 825
DOCKER_MOUNT = "/fleet/secure"  # where infra/docker-compose.yml mounts var/secure
MQTT_USERS = ("gateway",)  # devices get theirs from `fleet devices add`
DEFAULT_DISPATCHER = "dispatcher:ops"  # the dispatch role's signing identity out of the box


@dataclass(frozen=True)
class SecureProfile:
    """Where the secure profile keeps its material, and the settings of each role."""

    root: Path
    kafka_port: int
    redis_port: int
    mqtt_port: int

    @classmethod
    def of(cls, settings: Settings) -> SecureProfile:
        root = Path(settings.var_dir) / "secure"
        ports = (settings.secure_kafka_port, settings.secure_redis_port, settings.secure_mqtt_port)
        return cls(root, *ports)

    @property
    def ca_file(self) -> Path:
        return self.root / "ca" / "ca.pem"

    @property
    def server_pem(self) -> Path:
        """Private key and certificate chain of the broker and Redis (PEM)."""
        return self.root / "certs" / "server.pem"

    def password_file(self, system: str, user: str) -> Path:
        return self.root / "credentials" / f"{system}-{user}.password"

    def password(self, system: str, user: str) -> str:
        return self.password_file(system, user).read_text().strip()

    @property
    def mqtt_auth_dir(self) -> Path:
        """Mosquitto's password and ACL files (fleet devices) and its PID file."""
        return self.root / "mqtt"

    def mqtt_url(self) -> str:
        """The gateway's own MQTT login over TLS."""
        return f"mqtts://gateway:{self.password('mqtt', 'gateway')}@{HOST}:{self.mqtt_port}"

    def env_file(self, role: str) -> Path:
        return self.root / "env" / f"{role}.env"

    @property
    def dispatch_keys_file(self) -> Path:
        return self.root / "credentials" / "dispatch-keys.json"

    def dispatch_key_file(self, issuer: str) -> Path:
        return self.root / "credentials" / f"dispatch-{issuer.replace(':', '_')}.key"

    def add_dispatcher(self, issuer: str) -> Path:
        """A signing key for dispatcher ``issuer`` (kept if it exists); returns its file."""
        path = self.dispatch_key_file(issuer)
        if not path.exists():
            _write_private(path, new_key() + "\n")
        keys = {}
        if self.dispatch_keys_file.exists():
            keys = json.loads(self.dispatch_keys_file.read_text())
        keys[issuer] = path.read_text().strip()
        _write_private(self.dispatch_keys_file, json.dumps(keys, indent=1, sort_keys=True) + "\n")
        return path

    # --- material ---------------------------------------------------------------------------
    def ensure_material(self) -> None:
        """CA, server certificate, passwords and env files; existing ones are kept."""
        _ensure_certificates(self.ca_file, self.server_pem)
        for system, users in (("kafka", KAFKA_ROLES), ("redis", REDIS_USERS), ("mqtt", MQTT_USERS)):
            for user in users:
                path = self.password_file(system, user)
                if not path.exists():
                    _write_private(path, secrets.token_urlsafe(24) + "\n")
        self.add_dispatcher(DEFAULT_DISPATCHER)
        for role in KAFKA_ROLES:
            lines = [f"{k}={v}" for k, v in self.env(role).items()]
            _write_private(self.env_file(role), "\n".join(lines) + "\n")
        self.write_redis_acl()
        self.write_docker_files()

    @property
    def redis_acl_file(self) -> Path:
        return self.root / "redis" / "users.acl"

    def write_redis_acl(self) -> None:
        """Redis's ACL file from the password files (only password hashes go in)."""
        rules = redis_acl_rules({u: self.password("redis", u) for u in REDIS_USERS})
        text = "".join(f"user {name} {rule}\n" for name, rule in rules.items())
        _write_private(self.redis_acl_file, text)

    def scram_format_options(self) -> list[str]:
        """``kafka-storage format`` options that create every role's SCRAM user."""
        options = []
        for role in KAFKA_ROLES:
            password = self.password("kafka", role)
            options += ["--add-scram", f"SCRAM-SHA-512=[name={role},password={password}]"]
        return options

    def write_docker_files(self) -> None:
        """The broker's configuration for ``docker compose --profile secure`` (this directory
        mounted at ``/fleet/secure``; infra/kafka/secure-kafka.sh formats and starts it)."""
        mounted = Path(DOCKER_MOUNT)
        port = self.kafka_port
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{HOST}:{port + 1}",
            "controller.listener.names=CONTROLLER",
            *secure_listener_properties(self, mounted, "0.0.0.0", HOST, port),
            "log.dirs=/var/lib/kafka/data",
            "num.partitions=12",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
        ]
        _write_private(self.root / "docker" / "server.properties", "\n".join(lines) + "\n")
        _write_private(
            self.root / "docker" / "format.args", "\n".join(self.scram_format_options()) + "\n"
        )
        if not (self.mqtt_auth_dir / "passwords").exists():  # the gateway's login, no device yet
            write_mosquitto_auth(
                [], self.mqtt_auth_dir / "passwords", self.mqtt_auth_dir / "acl", "gateway",
                self.password("mqtt", "gateway"),
            )  # fmt: skip
        _write_private(
            self.root / "docker" / "mosquitto.conf",
            f"listener {self.mqtt_port}\nallow_anonymous false\n"
            f"password_file {mounted}/mqtt/passwords\nacl_file {mounted}/mqtt/acl\n"
            f"certfile {mounted}/certs/server.crt\nkeyfile {mounted}/certs/server.key\n"
            f"cafile {mounted}/ca/ca.pem\ntls_version tlsv1.2\n",
        )

    def env(self, role: str) -> dict[str, str]:
        """The ``FLEET_*`` variables of a client acting as ``role`` (passwords as files)."""
        redis_user = REDIS_USER_OF_ROLE.get(role, "dashboard")
        mqtt = {
            "FLEET_MQTT_URL": self.mqtt_url(),
            "FLEET_MQTT_SSL_CAFILE": str(self.ca_file),
            "FLEET_MQTT_AUTH_DIR": str(self.mqtt_auth_dir),
        }
        extra = {
            "pipeline": {"FLEET_DISPATCH_KEYS_FILE": str(self.dispatch_keys_file)},
            "dispatch": {
                "FLEET_DISPATCH_KEY_FILE": str(self.dispatch_key_file(DEFAULT_DISPATCHER))
            },
            "gateway": mqtt | {"FLEET_GATEWAY_DEVICE_TOKENS": "true"},
            ADMIN: mqtt,
        }.get(role, {})
        return extra | {
            "FLEET_KAFKA_BOOTSTRAP": f"{HOST}:{self.kafka_port}",
            "FLEET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "FLEET_KAFKA_USERNAME": role,
            "FLEET_KAFKA_PASSWORD_FILE": str(self.password_file("kafka", role)),
            "FLEET_KAFKA_SSL_CAFILE": str(self.ca_file),
            "FLEET_REDIS_URL": f"rediss://{HOST}:{self.redis_port}/0",
            "FLEET_REDIS_USERNAME": redis_user,
            "FLEET_REDIS_PASSWORD_FILE": str(self.password_file("redis", redis_user)),
            "FLEET_REDIS_SSL_CAFILE": str(self.ca_file),
        }

    def settings(self, base: Settings, role: str, redis_user: str | None = None) -> Settings:
        """``base`` with the secure addresses and the credentials of ``role``."""
        redis_user = redis_user or REDIS_USER_OF_ROLE.get(role, "dashboard")
        return base.model_copy(
            update={
                "kafka_bootstrap": f"{HOST}:{self.kafka_port}",
                "kafka_security_protocol": "SASL_SSL",
                "kafka_username": role,
                "kafka_password": SecretStr(self.password("kafka", role)),
                "kafka_ssl_cafile": self.ca_file,
                "redis_url": f"rediss://{HOST}:{self.redis_port}/0",
                "redis_username": redis_user,
                "redis_password": SecretStr(self.password("redis", redis_user)),
                "redis_ssl_cafile": self.ca_file,
                "mqtt_url": self.mqtt_url(),
                "mqtt_ssl_cafile": self.ca_file,
                "mqtt_auth_dir": self.mqtt_auth_dir,
            }
        )


def secure_listener_properties(
    profile: SecureProfile, files: Path, bind: str, host: str, port: int
) -> list[str]:
    """The SASL_SSL listener, the mTLS controller listener and the authorizer; ``files`` is
    where the profile's directory is seen by the broker (its root, or a container mount)."""
    admin = profile.password("kafka", ADMIN)
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{admin}";'
    )
    return [
        f"listeners=SASL_SSL://{bind}:{port},CONTROLLER://{host}:{port + 1}",
        f"advertised.listeners=SASL_SSL://{host}:{port}",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        "inter.broker.listener.name=SASL_SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={files / 'certs' / 'server.pem'}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={files / 'ca' / 'ca.pem'}",
        # Only holders of a certificate of the project's CA reach the controller.
        "listener.name.controller.ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{ADMIN};User:{BROKER_CN}",
        "allow.everyone.if.no.acl.found=false",
    ]


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise ServiceUnavailable("openssl is needed to make the secure profile's certificates")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ensure_certificates(ca_file: Path, server_pem: Path) -> None:
    """The project's own CA and one server certificate for 127.0.0.1/localhost."""
    if ca_file.exists() and server_pem.exists():
        return
    ca_dir, cert_dir = ca_file.parent, server_pem.parent
    for d in (ca_dir, cert_dir):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", ca_file.name, "-days", str(CERT_DAYS), "-subj", "/CN=fleet-local-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=ca_dir)  # fmt: skip
    (cert_dir / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", f"/CN={BROKER_CN}", cwd=cert_dir)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_file),
             "-CAkey", str(ca_dir / "ca.key"), "-CAcreateserial", "-out", "server.crt",
             "-days", str(CERT_DAYS), "-extfile", "server.ext", cwd=cert_dir)  # fmt: skip
    os.chmod(cert_dir / "server.key", 0o600)
    _write_private(
        server_pem, (cert_dir / "server.key").read_text() + (cert_dir / "server.crt").read_text()
    )


def _rehome(service: services._Service, root: Path) -> None:
    """Keep a service's data, log and PID file under ``root/<name>/``."""
    service.home = root / service.name
    service.pidfile = service.home / f"{service.name}.pid"
    service.logfile = service.home / f"{service.name}.log"


class SecureKafka(services.Kafka):
    """The KRaft broker with a SASL_SSL (SCRAM) listener, an mTLS controller listener and the
    StandardAuthorizer; SCRAM users are created when the storage is formatted."""

    def __init__(self, settings: Settings, profile: SecureProfile) -> None:
        super().__init__(settings)
        self.profile = profile
        _rehome(self, profile.root)

    def listener_properties(self, host: str, port: int) -> list[str]:
        return secure_listener_properties(self.profile, self.profile.root, host, host, port)

    def prepare(self) -> None:
        super().prepare()
        (self.home / "server.properties").chmod(0o600)  # it holds the admin's password

    def format_options(self) -> list[str]:
        return self.profile.scram_format_options()

    def after_ready(self) -> None:
        services.ensure_topics(self.settings)
        ensure_acls(self.settings)
        sync_scram_users(self.settings, self.profile)


class SecureRedis(services.Redis):
    """redis-server on a TLS-only port with ACL users (no default user)."""

    def __init__(self, settings: Settings, profile: SecureProfile) -> None:
        super().__init__(settings)
        self.profile = profile
        _rehome(self, profile.root)

    def address(self) -> tuple[str, int]:
        return (HOST, self.profile.redis_port)

    def prepare(self) -> None:
        self.profile.write_redis_acl()
        cert_dir = self.profile.server_pem.parent
        lines = [
            f"bind {HOST}",
            "port 0",
            f"tls-port {self.profile.redis_port}",
            f"tls-cert-file {cert_dir / 'server.crt'}",
            f"tls-key-file {cert_dir / 'server.key'}",
            f"tls-ca-cert-file {self.profile.ca_file}",
            "tls-auth-clients no",
            'save ""',
            "appendonly no",
            f"dir {self.home}",
            "daemonize no",
            f"aclfile {self.profile.redis_acl_file}",
        ]
        _write_private(self.home / "redis.conf", "\n".join(lines) + "\n")

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable("redis-server missing: run `make setup` (apt-get install)")
        return [binary, str(self.home / "redis.conf")]

    def after_ready(self) -> None:
        sync_redis_users(self.settings, self.profile)


class SecureMosquitto(services.Mosquitto):
    """Mosquitto on a TLS-only port, without anonymous access: the gateway's own user and
    one user per device (``fleet devices``), each limited by the ACL file."""

    def __init__(self, settings: Settings, profile: SecureProfile) -> None:
        super().__init__(settings)
        self.profile = profile
        _rehome(self, profile.root)
        # Beside the ACL files, where `fleet devices` looks for the broker to reload.
        self.pidfile = profile.mqtt_auth_dir / "mosquitto.pid"

    def prepare(self) -> None:
        super().prepare()  # listener, password and ACL files (FLEET_MQTT_AUTH_DIR is set)
        cert_dir = self.profile.server_pem.parent
        with open(self.home / "mosquitto.conf", "a") as conf:
            conf.write(
                f"certfile {cert_dir / 'server.crt'}\nkeyfile {cert_dir / 'server.key'}\n"
                f"cafile {self.profile.ca_file}\ntls_version tlsv1.2\n"
            )


def _services(base: Settings, profile: SecureProfile) -> list[services._Service]:
    admin = profile.settings(base, ADMIN)
    return [
        SecureKafka(admin, profile),
        SecureRedis(admin, profile),  # before Mosquitto: its password file comes from Redis
        SecureMosquitto(admin, profile),
    ]


def secure_services(settings: Settings) -> list[services._Service]:
    """The secure profile's broker, Redis and Mosquitto, as the admin."""
    profile = SecureProfile.of(settings)
    profile.ensure_material()
    return _services(settings, profile)


def up(settings: Settings, log: Callable[[str], None] = print) -> SecureProfile:
    """Start the secure broker and Redis (idempotent); return where their material is."""
    for service in secure_services(settings):
        service.up(log)
    return SecureProfile.of(settings)


@contextmanager
def running(base: Settings, profile: SecureProfile) -> Iterator[SecureProfile]:
    """The secure broker, Redis and Mosquitto of ``profile`` (own root and ports) for the
    ``with`` block: started here, stopped at the end (tests and benchmarks beside the shared
    services)."""
    profile.ensure_material()
    started: list[services._Service] = []
    try:
        for service in _services(base, profile):
            started.append(service)
            service.up(lambda _msg: None)
        yield profile
    finally:
        for running_service in reversed(started):
            running_service.down(lambda _msg: None)


def free_port_pair() -> int:
    """A free port p with p+1 also free (the secure broker's controller listens on p+1)."""
    import socket

    for _ in range(50):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s:
            try:
                s.bind((HOST, port + 1))
            except OSError:
                continue
        return port
    raise ServiceUnavailable("no two adjacent free ports")


def down(settings: Settings, log: Callable[[str], None] = print) -> None:
    for service in reversed(secure_services(settings)):
        service.down(log)


def status(settings: Settings) -> list[services.ServiceStatus]:
    return [s.status() for s in secure_services(settings)]


def ensure_acls(settings: Settings) -> int:
    """Create every role's ACLs (idempotent) with the admin ``settings``; return how many."""
    from confluent_kafka.admin import AdminClient

    bindings = [
        _binding(role, grant, operation)
        for role, grants in role_grants(settings).items()
        for grant in grants
        for operation in grant.operations
    ]
    admin = AdminClient(confluent_config(settings, {"log_level": 0}))
    for future in admin.create_acls(bindings, request_timeout=30).values():
        try:
            future.result()
        except Exception as exc:
            raise ServiceUnavailable(f"cannot create ACLs: {exc}") from exc
    return len(bindings)


def sync_scram_users(admin: Settings, profile: SecureProfile) -> None:
    """Set every role's SCRAM credential from its password file (a rotation: write the new
    password into the file, run ``fleet infra up --secure``). The admin's own password lives
    in the broker's configuration too and changes only with a fresh broker."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(role, info, profile.password("kafka", role).encode())
        for role in KAFKA_ROLES
        if role != ADMIN
    ]
    client = AdminClient(confluent_config(admin, {"log_level": 0}))
    for user, future in client.alter_user_scram_credentials(upserts).items():
        try:
            future.result()
        except Exception as exc:
            raise ServiceUnavailable(f"cannot set the SCRAM credential of {user}: {exc}") from exc


def sync_redis_users(admin: Settings, profile: SecureProfile) -> None:
    """Set every Redis user's rules and password from the password files (as the admin)."""
    from fleet.clients import redis_client

    rules = redis_acl_rules({u: profile.password("redis", u) for u in REDIS_USERS})
    with redis_client(admin) as client:
        for name, rule in rules.items():
            if name != ADMIN:
                client.execute_command("ACL", "SETUSER", name, "reset", *rule.split())


def _binding(role: str, grant: Grant, operation: str) -> AclBinding:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    # librdkafka calls the cluster resource BROKER.
    resource = "BROKER" if grant.resource == "cluster" else grant.resource.upper()
    return AclBinding(
        ResourceType[resource],
        grant.name,
        ResourcePatternType[grant.pattern.upper()],
        f"User:{role}",
        "*",
        AclOperation[operation],
        AclPermissionType.ALLOW,
    )
