"""An LMS's bulk download of submissions, turned into a submissions folder and a roster.

:func:`import_submissions` reads the zip an instructor downloads from Canvas
("Download Submissions"), Moodle ("Download all submissions") or Gradescope
("Export Submissions"), writes one notebook per student to ``OUT/<stem>.ipynb``
and ``OUT/roster.csv`` (:func:`grader.platforms.roster.write_roster`), ready for
``grader batch OUT`` and then ``grader export``/``grader publish --roster OUT/roster.csv``.
The names below are what each platform's own code writes (read in its source):

**Canvas** (``lib/content_zipper.rb`` of instructure/canvas-lms, ``get_filename``,
``add_upload_submission``, ``sanitize_*``): an uploaded file is
``<name>[_LATE]_<user id>_<attachment id>_<file name>``.  ``<name>`` is the
student's sortable name ("Liddell, Alice") downcased, the underscores around
a number in it dropped, then every non-word character removed: ``liddellalice``.  ``LATE`` is
there when Canvas counts the submission late.  With anonymous grading the name
is left out and the id is ``anon_<anonymous id>`` (5 base58 characters,
``Anonymity.generate_short_id``): ``[LATE_]anon_Ab3xY_<attachment id>_<file
name>``.  The third number is the *attachment* id (not the submission's); the
zip holds the current attempt only.  A text entry or a URL is
``<name>[_LATE]_<user id>_text.html`` / ``_link.html``.  ``-1``, ``-2``... before
the extension come from ``Attachment.make_unique_filename`` (a name already
taken in the student's folder or in the zip): ``conv2d-1.ipynb``.  The Test
Student of Student View is an ordinary user named ``studenttest``.  Canvas's
own reader of these names (``Assignment#infer_comment_context_from_filename``)
takes the first two all-digit ``_`` fields as user id and attachment id; so do we.

**Moodle** (``mod/assign/locallib.php`` of moodle/moodle, ``download_submissions``):
the prefix is ``clean_filename(<full name, "_" made " "> + "_" +
get_uniqueid_for_user(userid))``, then ``_assignsubmission_file_``.  With
"Download submissions in folders" (the default since 3.1) a file is
``<prefix>_assignsubmission_file_/<path in the submission><file name>``,
without it ``<prefix>_assignsubmission_file_<file name>``; online text is
``..._assignsubmission_onlinetext_/onlinetext.html``.  Team submissions put
``<group name>-`` before the name; blind marking writes ``Participant`` instead
of it.  The number is *never* the user id: ``get_uniqueid_for_user`` returns
the row id of ``assign_user_mapping`` (allocated per assignment, shuffled), in
blind marking or not; it is what Moodle's grading worksheet calls
``Participant <n>``, so that is the roster's ``user_id`` (a bare number could
pass for a Moodle user id, which is also Moodle's LTI user id), and a warning
says so.

**Gradescope** (Export Submissions; the layout readers such as otter-grader's
``GradescopeParser`` use): ``assignment_<id>_export/`` holds
``submission_metadata.yml`` and a folder ``submission_<id>/`` per submission
with the files as uploaded.  The YAML, written by Ruby's Psych, maps each folder
name to Ruby-symbol keys: ``:submitters:`` (a list of ``:name:``, ``:sid:``,
``:email:``; several for a group), ``:created_at:`` (a timestamp with zone),
``:score:``, ``:results:``...  Exports have been seen split into several YAML
documents by a bare ``...`` (a public parser's regression test); all of them
are read, by YAML's safe loader: no tag builds an object.  A group's notebook
is written once per member.

Our choices.  ``user_id``: the Canvas user id (``anon_<id>`` when anonymous);
``Participant <n>`` for Moodle; ``sid:<SID>`` for Gradescope, else the email
(the SID is the student's institution id; an email changes more often).  The
Gradescope SID is also written as ``sis_id`` (Canvas *SIS User ID*, Moodle *ID
number*) and the ``sid:`` keeps a numeric SID out of columns that take a bare
number for a platform's own user id (Canvas *ID*, Moodle *User ID*, an LTI
``userId``), where it would name another student.  Stems: ``canvas-101``,
``canvas-anon-...``, ``moodle-participant-17``, ``gradescope-sid-...``: lower
case letters, digits, ``.``, ``_``, ``-``, ``@``; an id that had to be changed to
fit gets a hash of itself appended, so two students never share a stem, on a
case-insensitive disk too.  ``submitted_at``: Gradescope's ``created_at``;
Canvas and Moodle carry no submission time (their zip entries are dated when
the zip is built: rubyzip's ``Entry`` and ZipStream default to "now"), so it is
left empty.  ``late``: Canvas's ``LATE`` marker (false without it); unknown
(empty) elsewhere.  Resubmissions: the newest wins (Gradescope: ``created_at``,
then the submission id; Canvas: repeated uploads of one file name, ``-N``
aside, by attachment id, which Canvas allocates in order); the others are
listed as superseded.  Several different notebooks, or none, is a message for
that student, who is skipped.

The zip is a stranger's data: no entry name is ever used as a path to write
(the stems are), and entries with ``..``, an absolute path, a backslash or a
control character, symbolic links and other non-regular files, names that
appear twice, and compression methods other than stored and deflate (whose
output Python's zipfile cannot bound per read) are not read, each with a
warning.  Each notebook is stream-copied with a cap (:class:`ImportLimits`), in
total too, through a temporary file renamed into place.  A damaged entry skips
its student; a file that is not a zip, a truncated zip or unreadable metadata
is an :class:`~grader.errors.LmsError`; ``OUT`` must be empty unless ``force``.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import stat
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field

from grader.errors import LmsError, ResultsError
from grader.grading.results_dir import NOTEBOOK_SUFFIX, atomic_file
from grader.platforms.roster import Student, write_roster

Platform = Literal["canvas", "moodle", "gradescope"]
PLATFORMS: tuple[str, ...] = get_args(Platform)
ROSTER_FILE = "roster.csv"
GRADESCOPE_METADATA = "submission_metadata.yml"
CHUNK = 1 << 16
SHOWN = 10  # names listed in one message before "..."
MAX_STEM = 100
MAX_TEXT = 200  # a name or an email from the zip, in the roster
UTF8_FLAG = 0x800  # general purpose bit 11: the entry's name is UTF-8
READABLE = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what Canvas, Moodle and Gradescope write
JUNK = re.compile(r"(^|/)(__MACOSX/|\._[^/]*$|\.DS_Store$|Thumbs\.db$)")  # zip tools' own files


class ImportLimits(BaseModel):
    """Caps on what one import reads from the zip (uncompressed bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_entries: int = Field(100_000, gt=0)
    max_notebook_bytes: int = Field(256 * 2**20, gt=0)
    max_total_bytes: int = Field(4 * 2**30, gt=0)
    max_metadata_bytes: int = Field(64 * 2**20, gt=0)


@dataclass(frozen=True)
class Imported:
    """A student whose notebook was written, and the zip entry it came from."""

    student: Student
    entry: str


@dataclass(frozen=True)
class Skipped:
    """A student (or what the zip calls them) without a notebook written, and why."""

    who: str
    reason: str


@dataclass(frozen=True)
class Superseded:
    """A notebook not imported because the same student handed in a newer one."""

    who: str
    entry: str
    by: str


@dataclass
class ImportReport:
    platform: str
    out: Path
    roster: Path
    students: list[Imported] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    superseded: list[Superseded] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per thing an instructor should know about, for the terminal."""
        lines = [f"skipped {s.who}: {s.reason}" for s in self.skipped]
        lines += [f"{s.who}: {s.entry} superseded by the newer {s.by}" for s in self.superseded]
        return lines + self.warnings

    def summary(self) -> str:
        return (
            f"{len(self.students)} notebook(s) imported into {self.out} (roster {self.roster}); "
            f"{len(self.skipped)} skipped, {len(self.superseded)} superseded"
        )


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    name: str  # the entry's path in the zip, decoded


@dataclass(frozen=True)
class _File:
    entry: _Entry
    path: str  # inside what the student handed in
    order: int = 0  # Canvas: the attachment id (newer is larger)


@dataclass
class _Hand:
    """What one student handed in at once (one Gradescope submission, one Canvas or Moodle folder)."""

    user_id: str
    stem: str
    name: str | None = None
    email: str | None = None
    sis_id: str | None = None
    late: bool | None = None
    submitted_at: datetime | None = None
    order: int = 0  # Gradescope: the submission id
    source: str = ""  # Gradescope: the submission's folder
    files: list[_File] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # handed in, but no file (a text entry, a URL)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.user_id})" if self.name else self.user_id


class _Unreadable(Exception):
    """A zip entry whose bytes cannot be had (damaged, encrypted, too large)."""


class _TooLarge(_Unreadable):
    """A zip entry over the limit it was read with."""


def import_submissions(
    platform: str,
    zip_path: Path | str,
    out: Path | str,
    *,
    force: bool = False,
    limits: ImportLimits | None = None,
) -> ImportReport:
    """Write the notebooks of an LMS download to ``out`` (one ``<stem>.ipynb`` per
    student) and ``out/roster.csv``; the module docstring says how each
    platform's zip is read.

    Raises :class:`LmsError` (exit code 3) for an unknown platform, a file that
    is not a usable zip of that platform, or one with nothing to import, and
    :class:`ResultsError` when ``out`` is not empty (without ``force``), not a
    folder or not writable.  Every problem of one student is in the report."""
    if platform not in PLATFORMS:
        raise LmsError(f"unknown platform {platform!r}; grader imports {', '.join(PLATFORMS)}")
    zip_path, out, limits = Path(zip_path), Path(out), limits or ImportLimits()
    _check_out(out, force)
    report = ImportReport(platform=platform, out=out, roster=out / ROSTER_FILE)
    with _open_zip(zip_path, limits) as zf:
        entries = _entries(zf, zip_path, report.warnings)
        if platform == "canvas":
            hands = _canvas(entries, report.warnings)
        elif platform == "moodle":
            hands = _moodle(entries, report.warnings)
        else:
            hands = _gradescope(zf, entries, limits, report.warnings)
        if not hands:
            raise LmsError(
                f"{zip_path}: no {_title(platform)} submission in it; {_not_layout(platform, entries, report.warnings)}"
            )
        chosen = _choose(platform, hands, report)
        if not chosen:
            raise LmsError(f"{zip_path}: nothing to import: {_first_reasons(report.skipped)}")
        _extract(zf, chosen, out, limits, report)
    if not report.students:
        raise LmsError(f"{zip_path}: no notebook could be read: {_first_reasons(report.skipped)}")
    if force:
        _note_foreign(out, report)
    report.students.sort(key=lambda i: (i.student.name is None, (i.student.name or "").casefold(), i.student.user_id))
    write_roster(report.roster, [i.student for i in report.students])
    return report


# --- the zip ---------------------------------------------------------------------------------------------------


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ResultsError(f"{out}: not a folder")
    try:
        taken = out.is_dir() and any(out.iterdir())
    except OSError as exc:
        raise ResultsError(f"{out}: cannot read the folder: {exc.strerror or exc}") from None
    if taken and not force:  # a stale notebook there would be graded with the new ones
        raise ResultsError(f"{out}: not empty; import into a new folder, or pass --force to write into this one")


def _open_zip(path: Path, limits: ImportLimits) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise LmsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LmsError(f"{path}: a folder, not the zip the LMS downloaded") from None
    except OSError as exc:
        raise LmsError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # Python refuses the whole central directory over one such name
        raise LmsError(f"{path}: an entry's name is marked UTF-8 but is not; not a zip the LMS wrote") from None
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise LmsError(f"{path}: not a zip file, or a truncated one ({exc}); download it again") from None
    if len(zf.infolist()) > limits.max_entries:
        zf.close()
        raise LmsError(f"{path}: more than {limits.max_entries} entries; not a download of one assignment")
    return zf


def _entries(zf: zipfile.ZipFile, zip_path: Path, warnings: list[str]) -> list[_Entry]:
    """The entries worth reading: regular files with a safe, unique name (the rest warned about)."""
    decoded: list[_Entry] = []
    not_utf8: list[str] = []
    for info in zf.infolist():
        name, utf8 = _entry_name(info)
        if not utf8:
            not_utf8.append(name)
        if info.is_dir() or JUNK.search(name):
            continue
        problem = _unsafe(name) or _not_regular(info)
        if problem:
            warnings.append(f"zip entry {_show(name)} not read: {problem}")
            continue
        decoded.append(_Entry(info, name))
    if not_utf8:
        warnings.append(f"names not in UTF-8, read as CP437 (IBM PC): {_list(not_utf8)}")
    counts = Counter(e.name for e in decoded)
    twice = sorted(n for n, c in counts.items() if c > 1)
    if twice:  # which of the copies is the student's is anybody's guess
        warnings.append(f"{zip_path.name} holds these names more than once; none of the copies is read: {_list(twice)}")
    return [e for e in decoded if counts[e.name] == 1]


def _entry_name(info: zipfile.ZipInfo) -> tuple[str, bool]:
    """The entry's name and whether it was UTF-8.  Zips without the UTF-8 flag
    are decoded as CP437 by the standard, but many tools write UTF-8 there."""
    if info.flag_bits & UTF8_FLAG:
        return info.filename, True
    raw = info.filename.encode("cp437")
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return info.filename, False


def _unsafe(name: str) -> str | None:
    if "\\" in name:
        return "a backslash in its path"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "a control character in its name"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "a '..', '.' or empty part in its path"
    return None


def _not_regular(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if info.create_system != 3 or not stat.S_IFMT(mode):  # only Unix zips record a file type, and not all do
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def _read_capped(zf: zipfile.ZipFile, entry: _Entry, limit: int, sink: Callable[[bytes], object]) -> int:
    """Stream an entry's bytes to ``sink``, chunk by chunk, never more than
    ``limit`` of them; returns how many.

    Raises :class:`_Unreadable` for a damaged, encrypted or too large entry,
    :class:`ResultsError` when ``sink`` cannot write."""
    info = entry.info
    if info.compress_type not in READABLE:
        raise _Unreadable(f"compressed with method {info.compress_type}, which LMS downloads do not use")
    if info.flag_bits & 0x1:
        raise _Unreadable("encrypted")
    if info.file_size > limit:
        raise _TooLarge(f"{_mb(info.file_size)} uncompressed, over the limit of {_mb(limit)}")
    total = 0
    try:
        with zf.open(info) as src:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:  # the header lied about the size
                    raise _TooLarge(f"more than {_mb(limit)} uncompressed")
                try:
                    sink(chunk)
                except OSError as exc:
                    raise ResultsError(f"cannot write a notebook: {exc.strerror or exc}") from None
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise _Unreadable(f"damaged in the zip ({exc})") from None
    except OSError as exc:
        raise _Unreadable(f"cannot be read ({exc.strerror or exc})") from None
    return total


# --- Canvas ----------------------------------------------------------------------------------------------------

# the name: Ruby's [[:word:]] (Unicode letters, digits, _); the ids: ASCII digits; the anonymous id: base58
CANVAS_FILE = re.compile(r"(?P<name>\w*?)(?:_(?P<late>LATE))?_(?P<id>[0-9]+)_(?P<att>[0-9]+)_(?P<file>.+)")
CANVAS_OTHER = re.compile(r"(?P<name>\w*?)(?:_(?P<late>LATE))?_(?P<id>[0-9]+)_(?P<kind>text|link)\.html")
CANVAS_ANON_FILE = re.compile(r"(?:(?P<late>LATE)_)?anon_(?P<id>[1-9A-HJ-NP-Za-km-z]+)_(?P<att>[0-9]+)_(?P<file>.+)")
CANVAS_ANON_OTHER = re.compile(r"(?:(?P<late>LATE)_)?anon_(?P<id>[1-9A-HJ-NP-Za-km-z]+)_(?P<kind>text|link)\.html")
CANVAS_TEST_STUDENT = "studenttest"  # "Student, Test", the Student View user
CANVAS_REPEAT = re.compile(r"-\d+(?=\.[^.]*$)")  # make_unique_filename's -1, -2 before the extension
CANVAS_KINDS = {"text": "a text entry", "link": "a website URL"}


def _canvas(entries: list[_Entry], warnings: list[str]) -> list[_Hand]:
    # Canvas's zip is flat; like Canvas's own reader, look at the base name only (a re-zipped folder still reads)
    base = {e.name: PurePosixPath(e.name).name for e in entries}
    named = [e for e in entries if CANVAS_FILE.fullmatch(base[e.name]) or CANVAS_OTHER.fullmatch(base[e.name])]
    anonymous = [
        e for e in entries if CANVAS_ANON_FILE.fullmatch(base[e.name]) or CANVAS_ANON_OTHER.fullmatch(base[e.name])
    ]
    # an anonymous zip names everyone anon_...; a student whose name is "anon" only looks like that
    anon = bool(anonymous) and len(anonymous) >= len(named)
    file_re, other_re = (CANVAS_ANON_FILE, CANVAS_ANON_OTHER) if anon else (CANVAS_FILE, CANVAS_OTHER)
    hands: dict[str, _Hand] = {}
    foreign = []
    for entry in entries:
        found = file_re.fullmatch(base[entry.name]) or other_re.fullmatch(base[entry.name])
        if not found:
            foreign.append(entry.name)
            continue
        raw_id = found["id"]
        user_id = f"anon_{raw_id}" if anon else raw_id
        hand = hands.get(user_id)
        if hand is None:
            name = None if anon else (_clean(found["name"]) or None)
            stem = _stem("canvas-anon", raw_id) if anon else _stem("canvas", raw_id)
            hand = hands[user_id] = _Hand(user_id, stem, name=name, late=bool(found["late"]))
        if "kind" in found.groupdict():
            hand.other.append(CANVAS_KINDS[found["kind"]])
        else:
            hand.files.append(_File(entry, found["file"], int(found["att"])))
    if foreign:
        warnings.append(f"not named as Canvas names submissions, so not read: {_list(foreign)}")
    tests = [h for h in hands.values() if h.name == CANVAS_TEST_STUDENT]
    if tests:
        warnings.append(
            f"{', '.join(h.label for h in tests)}: looks like Canvas's Test Student (Student View); imported like "
            "any student: remove the roster line if it should not be graded"
        )
    if anon:
        warnings.append(
            "anonymous grading: the zip names students by Canvas's anonymous id only (user_id anon_...); a gradebook "
            "CSV cannot match them until the assignment's anonymity is lifted and the submissions downloaded again"
        )
    return list(hands.values())


# --- Moodle ----------------------------------------------------------------------------------------------------

MOODLE_FOLDER = re.compile(r"(?P<name>.*?)_(?P<id>[0-9]+)_assignsubmission_(?P<plugin>[a-z0-9_]+?)_")
MOODLE_FLAT = re.compile(r"(?P<name>.*?)_(?P<id>[0-9]+)_assignsubmission_(?P<plugin>file|onlinetext)_(?P<file>.+)")
MOODLE_BLIND = "Participant"  # get_string('participant', 'assign') in English
MOODLE_PLUGINS = {"onlinetext": "an online text"}


def _moodle(entries: list[_Entry], warnings: list[str]) -> list[_Hand]:
    hands: dict[str, _Hand] = {}
    foreign = []
    for entry in entries:
        top, _, rest = entry.name.partition("/")
        found = MOODLE_FOLDER.fullmatch(top) if rest else MOODLE_FLAT.fullmatch(top)
        if not found:
            foreign.append(entry.name)
            continue
        user_id = f"Participant {found['id']}"
        hand = hands.get(user_id)
        if hand is None:
            name = _clean(found["name"])
            hand = hands[user_id] = _Hand(
                user_id, _stem("moodle-participant", found["id"]), name=None if name == MOODLE_BLIND else name or None
            )
        path = rest or found["file"]
        if found["plugin"] == "file":
            hand.files.append(_File(entry, path))
        else:
            hand.other.append(MOODLE_PLUGINS.get(found["plugin"], f"{found['plugin']} ({PurePosixPath(path).name})"))
    if foreign:
        warnings.append(f"not named as Moodle names submissions, so not read: {_list(foreign)}")
    if hands:
        blind = " (blind marking: the zip has no names either)" if any(h.name is None for h in hands.values()) else ""
        warnings.append(
            "Moodle names each student by a participant number of this assignment, not by a user id"
            f"{blind}: the roster's user_id is 'Participant N', as in Moodle's grading worksheet; add the students' "
            "email, username or ID number to the roster before sending grades to Moodle's gradebook"
        )
    return list(hands.values())


# --- Gradescope ------------------------------------------------------------------------------------------------

GRADESCOPE_FOLDER = re.compile(r"submission_(?P<id>[0-9]+)")


def _gradescope(zf: zipfile.ZipFile, entries: list[_Entry], limits: ImportLimits, warnings: list[str]) -> list[_Hand]:
    found = [e for e in entries if PurePosixPath(e.name).name == GRADESCOPE_METADATA and e.name.count("/") <= 1]
    if not found:
        raise LmsError(f"no {GRADESCOPE_METADATA} (at the top or in its export folder): not a Gradescope export")
    if len(found) > 1:
        raise LmsError(
            f"{len(found)} {GRADESCOPE_METADATA} files ({_list([e.name for e in found])}); export one assignment"
        )
    meta = found[0]
    root = meta.name[: -len(GRADESCOPE_METADATA)]  # "" or "assignment_123_export/"
    submissions = _gradescope_metadata(zf, meta, limits)
    by_folder: dict[str, list[_File]] = defaultdict(list)
    foreign = []
    for entry in entries:
        if entry is meta:
            continue
        folder, _, path = entry.name[len(root) :].partition("/") if entry.name.startswith(root) else ("", "", "")
        if folder in submissions and path:
            by_folder[folder].append(_File(entry, path))
        else:
            foreign.append(entry.name)
    if foreign:
        warnings.append(f"not in a submission folder the metadata lists, so not read: {_list(foreign)}")
    hands = []
    for folder, record in submissions.items():
        submitters = record.get(":submitters", record.get("submitters"))
        if not isinstance(submitters, list) or not submitters:
            warnings.append(f"{folder}: the metadata names no submitter; not imported")
            continue
        when = _when(record.get(":created_at", record.get("created_at")), folder, warnings)
        number = GRADESCOPE_FOLDER.fullmatch(folder)
        for submitter in submitters:
            hand = _gradescope_hand(submitter, folder, warnings)
            if hand is not None:
                hand.submitted_at, hand.order, hand.source = when, int(number["id"]) if number else 0, folder
                hand.files = by_folder.get(folder, [])
                hands.append(hand)
    return hands


def _gradescope_metadata(zf: zipfile.ZipFile, meta: _Entry, limits: ImportLimits) -> dict[str, dict[str, Any]]:
    """``{folder: record}`` from ``submission_metadata.yml``, every YAML document of it."""
    chunks: list[bytes] = []
    try:
        _read_capped(zf, meta, limits.max_metadata_bytes, chunks.append)
        text = b"".join(chunks).decode("utf-8-sig")
    except _Unreadable as exc:
        raise LmsError(f"{meta.name}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise LmsError(f"{meta.name}: not UTF-8 (byte {exc.start})") from None
    # Gradescope has been seen joining documents with a bare "..." and no "---" after it, which libyaml refuses
    text = re.sub(r"(?m)^\.\.\.[ \t]*$", "---", text)
    merged: dict[str, dict[str, Any]] = {}
    try:
        for document in yaml.load_all(text, Loader=_MetadataLoader):
            if document is None:
                continue
            if not isinstance(document, dict):
                raise LmsError(f"{meta.name}: not Gradescope's metadata (a mapping of submission folders)")
            for folder, record in document.items():
                if not isinstance(folder, str) or not isinstance(record, dict):
                    raise LmsError(f"{meta.name}: entry {_show(str(folder))} is not a submission's metadata")
                if folder in merged:
                    raise LmsError(f"{meta.name}: {_show(folder)} is described twice")
                merged[folder] = record
    except (yaml.YAMLError, RecursionError) as exc:
        raise LmsError(f"{meta.name}: not valid YAML: {_show(' '.join(str(exc).split())[:MAX_TEXT])}") from None
    return merged


class _MetadataLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader (libyaml's when there: it caps the nesting depth), which
    also reads a Ruby-tagged node (``!ruby/object:...``, as Psych writes some
    Rails values) as the plain data it holds, and an impossible timestamp as its
    text: never an object, and one odd value does not make the file unreadable."""


def _plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


def _timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    try:
        return loader.construct_yaml_timestamp(node)  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        return loader.construct_scalar(node)  # type: ignore[arg-type]


_MetadataLoader.add_multi_constructor("!", _plain)
_MetadataLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _gradescope_hand(submitter: object, folder: str, warnings: list[str]) -> _Hand | None:
    if not isinstance(submitter, dict):
        warnings.append(f"{folder}: a submitter that is not a mapping; not imported")
        return None
    record: dict[Any, Any] = submitter

    def text(key: str) -> str | None:
        value = record.get(f":{key}", record.get(key))
        value = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        return _clean(value) if value else None

    sid, email, name = text("sid"), text("email"), text("name")
    if sid:
        user_id, stem = f"sid:{sid}", _stem("gradescope-sid", sid)
    elif email:
        user_id, stem = email, _stem("gradescope", email)
    else:
        warnings.append(
            f"{folder}: submitter {_show(name or '(no name)')} has neither a SID nor an email; not imported"
        )
        return None
    return _Hand(user_id, stem, name=name, email=email, sis_id=sid)


def _when(value: object, folder: str, warnings: list[str]) -> datetime | None:
    """Gradescope's ``created_at`` (a YAML timestamp, a string of one, or a Rails
    TimeWithZone's fields), time zone required."""
    if isinstance(value, dict):
        value = value.get("utc", value)
    if isinstance(value, str):
        found = re.fullmatch(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?\s*(Z|[+-]\d\d:?\d\d)?", value.strip())
        if found:
            date, clock, fraction, zone = found.groups()
            try:
                value = datetime.fromisoformat(
                    f"{date}T{clock}{(fraction or '')[:7]}{'+00:00' if zone == 'Z' else zone or ''}"
                )
            except ValueError:
                pass
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        warnings.append(f"{folder}: created_at {_show(str(value))} is not a valid time with a time zone; left empty")
        return None
    return value


# --- choosing each student's notebook -------------------------------------------------------------------------


def _choose(platform: str, hands: list[_Hand], report: ImportReport) -> list[tuple[_Hand, _File]]:
    """The notebook to import for each student; the skipped and superseded go to the report."""
    by_student: dict[str, list[_Hand]] = defaultdict(list)
    for hand in hands:
        by_student[hand.user_id].append(hand)
    chosen = []
    for group in by_student.values():
        newest = _newest(group)
        for older in group:
            if older is not newest:
                handed = ", ".join(_show(f.entry.name) for f in _notebooks(older)) or _describe(older)
                report.superseded.append(Superseded(newest.label, handed, _describe(newest)))
        picked = _pick(platform, newest, report)
        if picked is not None:
            chosen.append((newest, picked))
    return chosen


def _newest(group: list[_Hand]) -> _Hand:
    if all(h.submitted_at for h in group):
        return max(group, key=lambda h: (h.submitted_at, h.order))
    return max(group, key=lambda h: h.order)


def _notebooks(hand: _Hand) -> list[_File]:
    # Jupyter's autosaved copies are not what the student chose to hand in
    return [
        f
        for f in hand.files
        if f.path.lower().endswith(NOTEBOOK_SUFFIX) and ".ipynb_checkpoints" not in f.path.split("/")
    ]


def _pick(platform: str, hand: _Hand, report: ImportReport) -> _File | None:
    notebooks = _notebooks(hand)
    if len(notebooks) == 1:
        return notebooks[0]
    if not notebooks:
        handed = [_show(f.path) for f in hand.files] + hand.other
        what = f"handed in {_list(handed)}" if handed else "nothing handed in"
        report.skipped.append(Skipped(hand.label, f"no .ipynb notebook ({what})"))
        return None
    if platform == "canvas" and len({CANVAS_REPEAT.sub("", f.path) for f in notebooks}) == 1:
        # one file name uploaded again: Canvas numbered the copies; its attachment ids grow with time
        newest = max(notebooks, key=lambda f: f.order)
        for file in notebooks:
            if file is not newest:
                report.superseded.append(Superseded(hand.label, _show(file.entry.name), _show(newest.entry.name)))
        return newest
    report.skipped.append(
        Skipped(
            hand.label,
            f"{len(notebooks)} notebooks ({_list([_show(f.path) for f in notebooks])}); which one to grade is the "
            "student's to say: put the right one in the submissions folder by hand",
        )
    )
    return None


def _describe(hand: _Hand) -> str:
    """``submission_2 of 2026-11-27T09:00:00-07:00``: a hand-in, for messages."""
    what = _show(hand.source) if hand.source else "the submission"
    return what + (f" of {hand.submitted_at.isoformat()}" if hand.submitted_at else "")


# --- writing ---------------------------------------------------------------------------------------------------


def _extract(
    zf: zipfile.ZipFile, chosen: list[tuple[_Hand, _File]], out: Path, limits: ImportLimits, report: ImportReport
) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"{out}: cannot create the folder: {exc.strerror or exc}") from None
    left = limits.max_total_bytes
    stems: set[str] = set()
    for hand, file in sorted(chosen, key=lambda c: c[0].stem):
        stem = _unique(hand.stem, stems)
        limit = min(limits.max_notebook_bytes, left)
        try:
            with atomic_file(out / f"{stem}{NOTEBOOK_SUFFIX}") as f:
                left -= _read_capped(zf, file.entry, limit, f.write)
        except _Unreadable as exc:
            reason = str(exc)
            if isinstance(exc, _TooLarge) and limit < limits.max_notebook_bytes >= file.entry.info.file_size:
                reason = f"not read: the import's total limit of {_mb(limits.max_total_bytes)} is used up"
            report.skipped.append(Skipped(hand.label, f"{_show(file.entry.name)}: {reason}"))
            continue
        except OSError as exc:
            raise ResultsError(f"{out}: cannot write a notebook: {exc.strerror or exc}") from None
        stems.add(stem.casefold())
        student = Student(
            submission=f"{stem}{NOTEBOOK_SUFFIX}",
            user_id=hand.user_id,
            name=hand.name,
            email=hand.email,
            sis_id=hand.sis_id,
            submitted_at=hand.submitted_at,
            late=hand.late,
        )
        report.students.append(Imported(student, _show(file.entry.name)))


def _note_foreign(out: Path, report: ImportReport) -> None:
    ours = {i.student.submission for i in report.students}
    foreign = sorted(p.name for p in out.iterdir() if p.name.endswith(NOTEBOOK_SUFFIX) and p.name not in ours)
    if foreign:
        report.warnings.append(
            f"{out} also holds notebooks this import did not write; `grader batch` would grade them too: {_list(foreign)}"
        )


# --- names -----------------------------------------------------------------------------------------------------


def _stem(prefix: str, raw: str) -> str:
    """``prefix-raw`` made safe for every file system; a changed ``raw`` gets a hash of itself."""
    safe = re.sub(r"[^a-z0-9._@-]+", "-", raw.lower()).strip(".-")[:MAX_STEM]
    if safe != raw:  # changed (case included): another id could have become the same
        safe = f"{safe}-{hashlib.sha256(raw.encode(errors='surrogatepass')).hexdigest()[:8]}".lstrip("-")
    return f"{prefix}-{safe}"


def _unique(stem: str, taken: set[str]) -> str:
    candidate, n = stem, 2
    while candidate.casefold() in taken:  # only if two hashes agree: never two students in one file
        candidate, n = f"{stem}~{n}", n + 1
    return candidate


def _clean(text: str) -> str:
    """A name or email from the zip, fit for a roster cell: no control characters
    nor lone surrogates (YAML can escape one), not too long."""
    text = re.sub(r"[\ud800-\udfff]", "\ufffd", text)
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()[:MAX_TEXT]


def _show(text: str) -> str:
    """A name from the zip, fit for the terminal: control characters (escape sequences) escaped."""
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return shown if len(shown) <= MAX_TEXT else shown[: MAX_TEXT - 1] + "…"


def _list(names: list[str]) -> str:
    shown = ", ".join(_show(n) for n in names[:SHOWN])
    return shown + (f" (and {len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MB" if nbytes < 2**30 else f"{nbytes / 2**30:.1f} GB"


def _title(platform: str) -> str:
    return {"canvas": "Canvas", "moodle": "Moodle", "gradescope": "Gradescope"}[platform]


def _not_layout(platform: str, entries: list[_Entry], warnings: list[str]) -> str:
    if not entries:
        return "it holds no file that could be read" + (f" ({'; '.join(warnings[:3])})" if warnings else "")
    return f"is it a {_title(platform)} download? It holds {_list([e.name for e in entries])}"


def _first_reasons(skipped: list[Skipped]) -> str:
    return "; ".join(f"{s.who}: {s.reason}" for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
