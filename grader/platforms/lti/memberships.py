"""Names and Role Provisioning Services: the class, as the platform knows it,
turned into a roster.

The memberships are read page by page (``Link: rel="next"``).  Active members
with a Learner role are the students; their ``user_id`` is what AGS Scores
are addressed to.  A roster also says which notebook is whose:

- with ``join`` (the roster ``grader import`` wrote from the LMS's download),
  each imported student is found among the members: by the same id, then the
  SIS id (``lis_person_sourcedid``), then the email, then the name as the
  download spells it (Canvas writes ``lastnamefirstname``; Moodle the full
  name).  Only a match with exactly one member counts;
- without it, each student's submission is named ``<user_id>.ipynb``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from grader.errors import LmsError
from grader.platforms.lti.services import ServiceClient
from grader.platforms.lti.tool import SCOPE_MEMBERSHIPS
from grader.platforms.roster import Roster, Student

MEMBERSHIPS_MEDIA_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
LEARNER = "membership#Learner"


class Member(BaseModel):
    """The members of an NRPS membership the grader reads; others are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user_id: str
    status: str = "Active"
    roles: list[str] = []
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    lis_person_sourcedid: str | None = None

    @property
    def is_student(self) -> bool:
        return self.status == "Active" and any(r == "Learner" or r.endswith(LEARNER) for r in self.roles)

    @property
    def display_name(self) -> str | None:
        return self.name or " ".join(n for n in (self.given_name, self.family_name) if n) or None


@dataclass
class RosterFromPlatform:
    students: list[Student]
    notes: list[str] = field(default_factory=list)


def fetch_members(client: ServiceClient, memberships_url: str) -> list[Member]:
    """Every member of the context, over all pages; malformed entries are skipped."""
    raw = client.get_all(memberships_url, scopes=[SCOPE_MEMBERSHIPS], accept=MEMBERSHIPS_MEDIA_TYPE, key="members")
    members = []
    for item in raw:
        try:
            members.append(Member.model_validate(_strings(item)))
        except ValidationError:
            continue
    return members


def roster_from_members(members: list[Member], join: Roster | None = None) -> RosterFromPlatform:
    """The students of ``members`` as roster lines (see the module's text)."""
    students = [m for m in members if m.is_student]
    if not students:
        raise LmsError("the platform lists no active students (role Learner) in this context")
    if join is None:
        return RosterFromPlatform([_student(m, f"{_file_stem(m.user_id)}.ipynb") for m in students])
    lines, notes, used = [], [], set()
    for imported in join.students:
        member, how = _match(imported, students)
        if member is None:
            notes.append(f"{imported.label} ({imported.submission}): {how}; left out, so the LMS gets no grade")
            continue
        if member.user_id in used:
            notes.append(f"{imported.label} ({imported.submission}): {member.user_id} is already matched; left out")
            continue
        used.add(member.user_id)
        lines.append(
            _student(member, imported.submission).model_copy(
                update={"submitted_at": imported.submitted_at, "late": imported.late, "section": imported.section}
            )
        )
    notes += [
        f"{m.display_name or m.user_id} ({m.user_id}) has no submission in {join.path.name}"
        for m in students
        if m.user_id not in used
    ]
    return RosterFromPlatform(lines, notes)


def _match(imported: Student, members: list[Member]) -> tuple[Member | None, str]:
    email = imported.email.casefold() if imported.email else None
    name = _name_key(imported.name) if imported.name else None
    keys: list[tuple[str, Callable[[Member], bool]]] = [
        ("id", lambda m: m.user_id == imported.user_id),
        ("SIS id", lambda m: imported.sis_id is not None and m.lis_person_sourcedid == imported.sis_id),
        ("email", lambda m: email is not None and m.email is not None and m.email.casefold() == email),
        ("name", lambda m: name is not None and name in _name_keys(m)),
    ]
    for what, same in keys:
        found = [m for m in members if same(m)]
        if len(found) == 1:
            return found[0], what
        if len(found) > 1:
            return None, f"{len(found)} students of the platform have the same {what}"
    return None, "no student of the platform has the same id, SIS id, email or name"


def _name_keys(member: Member) -> set[str]:
    given, family = member.given_name or "", member.family_name or ""
    keys = {_name_key(family + given), _name_key(given + family)}
    if member.name:
        keys.add(_name_key(member.name))
    return keys - {""}


def _name_key(name: str) -> str:
    """Letters and digits only, accents removed, lower case: how a download's file name spells a student."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c)).casefold()


def _student(member: Member, submission: str) -> Student:
    return Student(
        submission=submission,
        user_id=member.user_id,
        name=member.display_name,
        email=member.email,
        sis_id=member.lis_person_sourcedid,
    )


def _file_stem(user_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", user_id).strip(".") or "student"


def _strings(item: Any) -> Any:
    """Ids some platforms send as numbers, as strings."""
    if not isinstance(item, dict):
        return item
    return {
        k: str(v) if k in ("user_id", "lis_person_sourcedid") and isinstance(v, int) else v for k, v in item.items()
    }
