"""Where a search keeps its records (the Optuna storage, the MLflow store, best configs), and
the checks that run before anything is started or created: a bad URL, an unreachable database,
a folder that cannot be written, a file that is not a database are each one line, exit code 2,
with nothing written.
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tuner.driver.space import Space
from tuner.errors import UserError

SQLITE_HEADER = b"SQLite format 3\x00"
SECRET_QUERY_KEYS = ("password", "passwd", "secret", "token", "key")
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Locations:
    """Where a search keeps its records; all created on demand, after validation."""

    storage: str
    tracking_uri: str
    artifact_root: Path | None
    best_folder: Path
    workdir: Path

    @property
    def remote_tracking(self) -> bool:
        return self.artifact_root is None


def locations(space: Space, workdir: Path, storage: str | None = None,
              tracking_uri: str | None = None) -> Locations:
    workdir = workdir.resolve()
    storage = storage or space.storage or f"sqlite:///{workdir / 'optuna.db'}"
    tracking_uri = tracking_uri or space.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    check_storage_url(storage)
    check_tracking_uri(tracking_uri)
    local_tracking = tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri
    return Locations(storage=storage, tracking_uri=tracking_uri,
                     artifact_root=workdir / "mlartifacts" if local_tracking else None,
                     best_folder=workdir / "best", workdir=workdir)


# what is left to mask when a URL does not parse: user:PASSWORD@ after "//", and the values of
# secret-looking query keys
_USERINFO = re.compile(r"(//[^/@:]*:)[^/@]*@")
_SECRET_VALUE = re.compile(r"([?&;][^=&;#]*(?:" + "|".join(SECRET_QUERY_KEYS) + r")[^=&;#]*=)"
                           r"[^&;#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The URL fit to print, log or record in MLflow: a password in it (user:PASSWORD@host) and
    query values that look secret (?password=, ?token=) replaced by ***; also in a URL that
    does not parse (a malformed IPv6 host, no scheme)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # unparsable: mask by pattern what could be a secret
        return _SECRET_VALUE.sub(r"\1***", _USERINFO.sub(r"\1***@", url))[:300]
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = "&".join(
        f"{key}=***" if any(word in key.lower() for word in SECRET_QUERY_KEYS) else f"{key}={value}"
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    shown = url if netloc == parts.netloc and query == parts.query else \
        urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))
    # and by pattern what parsing did not see (no scheme, "://user:pw@host"; a "?password="
    # after a "#"); idempotent on what is masked already
    return _SECRET_VALUE.sub(r"\1***", _USERINFO.sub(r"\1***@", shown))


def check_storage_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a malformed host or port
        raise UserError(f"--storage: {redact(url)!r} is not a database URL; use e.g. "
                        "sqlite:///tuner.db or postgresql://user@host/db") from None


def check_tracking_uri(uri: str) -> None:
    schemes = ("sqlite:", "file:", "http:", "https:", "postgresql", "mysql", "databricks")
    if "://" in uri and not uri.startswith(schemes):
        raise UserError(f"--tracking-uri: unsupported scheme in {redact(uri)!r}; "
                        "use sqlite:///mlflow.db, "
                        "http://host:5000, file:/path or a local folder")


def ensure_local_folders(where: Locations) -> None:
    _make_folder(where.workdir, "--workdir")
    for url, flag in ((where.storage, "--storage"), (where.tracking_uri, "--tracking-uri")):
        if url.startswith("sqlite:///"):
            _make_folder(Path(url.removeprefix("sqlite:///")).parent, flag)


def _make_folder(folder: Path, flag: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{flag}: cannot create folder {folder}: {error.strerror or error}; "
                        "give a folder you can write") from None


def preflight(where: Locations) -> None:
    """Every check that needs no Ray and creates nothing, run before Ray starts."""
    _check_writable_folder(where.workdir, "--workdir")
    preflight_database(where.storage, "--storage")
    if where.tracking_uri.startswith("sqlite:"):
        preflight_database(where.tracking_uri, "--tracking-uri")


def _check_writable_folder(folder: Path, flag: str) -> None:
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag}: {existing} is a file, not a folder; give a folder path")
    try:  # a real try, not os.access: root "may write" /proc, where nothing can be made
        os.rmdir(tempfile.mkdtemp(prefix=".tuner-probe-", dir=existing))
    except OSError as error:
        raise UserError(f"{flag}: cannot create {folder}: {existing} is not writable "
                        f"({error.strerror or error}); give a folder you can write") from None


def preflight_database(url: str, flag: str) -> None:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.exists():
            if not path.is_file():
                raise UserError(f"{flag}: {path} is not a file; give a SQLite file path")
            with open(path, "rb") as handle:
                head = handle.read(len(SQLITE_HEADER))
            if head and head != SQLITE_HEADER:
                raise UserError(f"{flag}: {path} is not a SQLite database; give another path, "
                                "or move that file away")
        else:
            _check_writable_folder(path.parent, flag)
        return
    if url.startswith("sqlite:"):
        return  # in-memory or relative forms: SQLAlchemy decides
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    dialect = url.split(":", 1)[0]
    try:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if dialect.startswith(
            ("postgres", "mysql")) else {}
        engine = sqlalchemy.create_engine(url, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as error:
        hint = {"postgresql": "pip install 'tuner[cluster]' (psycopg 3), or name the driver you "
                              "have: postgresql+psycopg2://...",
                "mysql": "pip install pymysql"}.get(dialect.split("+")[0],
                                                   "install the database driver for it")
        raise UserError(f"{flag}: no database driver for {dialect!r} ({error}); {hint}") from None
    except ArgumentError as error:
        raise UserError(f"{flag}: {redact(url)!r} is not a database URL: {error}") from None
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as error:
        first = (str(getattr(error, "orig", error)).strip().splitlines() or [""])[0][:200]
        raise UserError(f"{flag}: cannot connect to the database: {first}; check the URL and "
                        "that the server is up") from None
    finally:
        engine.dispose()
