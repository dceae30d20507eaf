"""The composition root: build the services from Settings, with their dependencies passed in."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.config import ConfigError, ensure_data_dir, ensure_secret
from helpdesk.core import audit, db, groups, slastate
from helpdesk.core.db import transaction
from helpdesk.core.intake import Intake
from helpdesk.core.mailauth import DbTokenStore
from helpdesk.core.rulebook import Rulebook
from helpdesk.core.settings import Settings
from helpdesk.mailgateway import oauth

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    intake: Intake


def build(settings: Settings, *, migrate: bool = True) -> App:
    ensure_data_dir(settings.data_dir)
    settings = ensure_secret(settings)
    engine = db.make_engine(settings.database_url)
    if migrate:
        db.upgrade(engine)
    rules = settings.rulebook.rules  # read and checked once, by helpdesk.config.load

    def parse(raw: bytes):  # type: ignore[no-untyped-def]
        # Imported at the first mail: the MIME, charset and calendar readers cost the commands that
        # read no mail (tickets, outbox, users...) ~0.06 s of each start.
        from helpdesk.mailgateway.parse import parse_message

        return parse_message(raw, max_attachment_bytes=settings.max_message_bytes)

    intake = Intake(settings, rules, parse)
    factory = db.make_sessionmaker(engine)
    slastate.use_policy(factory, settings.sla)  # tickets this process changes keep their SLA outcomes under it
    audit.use_secret(factory, settings.secret_key)  # the audit chain is keyed by a secret not in the database
    oauth.use_store(DbTokenStore(factory, settings))  # XOAUTH2 logins keep refresh tokens and statuses there
    if migrate:  # (a restore brings its own schema first)
        check_groups(factory, settings.rulebook)
    return App(settings, engine, factory, intake)


def check_groups(factory: sessionmaker[Session], rulebook: Rulebook) -> None:
    """Routing to a group that does not exist would leave tickets in no one's queue: a configuration error.

    A desk without any groups yet first adopts the ones its rules, catalogue and tickets name (core.groups.adopt).
    """
    try:
        with transaction(factory) as session:
            groups.adopt(session, rulebook.rules, rulebook.catalogue)
    except IntegrityError:
        # Another process started at the same moment and adopted them first: its groups stand.
        log.info("groups adopted by another process starting at the same time")
    with factory() as session:
        try:
            groups.check_rules(session, rulebook.rules)
            groups.check_catalogue(session, rulebook.catalogue, str(rulebook.catalogue_file or "the shipped catalogue"))
        except groups.GroupError as exc:
            raise ConfigError(str(exc)) from None
