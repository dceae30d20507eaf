"""The desk's decisions kept as data: classification rules, service catalogue and priority matrix.

They are read and validated once per process, at start (helpdesk.config.load puts them into Settings),
so a broken file stops the start with one line, and no mail or request reads a file again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from helpdesk.core.catalogue import CATALOGUE_FILE, Catalogue, load_catalogue
from helpdesk.core.classify import RuleSet, load_rules
from helpdesk.core.priority import PRIORITY_FILE, PriorityMatrix, load_desk_matrix

RULES_FILE = "rules.toml"


@dataclass(frozen=True)
class Rulebook:
    rules: RuleSet  # classified with `matrix`
    catalogue: Catalogue
    matrix: PriorityMatrix
    # The files each was read from; None: the shipped one.
    rules_file: Path | None = None
    catalogue_file: Path | None = None
    matrix_file: Path | None = None


def load_rulebook(
    data_dir: Path, *, rules: Path | None = None, catalogue: Path | None = None, priority: Path | None = None
) -> Rulebook:
    """Each file from its setting, else from the data dir if there, else the shipped one."""
    rules = _chosen(rules, data_dir / RULES_FILE)
    catalogue = _chosen(catalogue, data_dir / CATALOGUE_FILE)
    priority = _chosen(priority, data_dir / PRIORITY_FILE)
    matrix = load_desk_matrix(priority)
    return Rulebook(
        rules=load_rules(rules, matrix=matrix), catalogue=load_catalogue(catalogue), matrix=matrix,
        rules_file=rules, catalogue_file=catalogue, matrix_file=priority,
    )


def _chosen(setting: Path | None, in_data_dir: Path) -> Path | None:
    return setting or (in_data_dir if in_data_dir.is_file() else None)


@functools.cache
def shipped_rulebook() -> Rulebook:
    """The shipped files only: what Settings built without helpdesk.config (tests, tools) start with."""
    matrix = load_desk_matrix()
    return Rulebook(rules=load_rules(matrix=matrix), catalogue=load_catalogue(), matrix=matrix)
