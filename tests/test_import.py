"""`grader import`: an LMS's bulk download of submissions (Canvas, Moodle,
Gradescope) into a submissions folder and a roster.  The zips are built here,
named as each platform's own code names them (see grader/platforms/lms_import.py),
and attacked the ways a stranger's zip can be; nothing runs a notebook."""

import csv
import io
import json
import stat
import struct
import warnings
import zipfile
from datetime import UTC, datetime, timedelta, timezone

import pytest
from result_factory import make_result, write_results

from grader.cli import main
from grader.errors import LmsError, ResultsError
from grader.platforms.gradebook import export_canvas, export_moodle
from grader.platforms.lms_import import ImportLimits, import_submissions
from grader.platforms.lti.scores import export_lti
from grader.platforms.roster import load_roster

PDT = timezone(timedelta(hours=-7))


def nb(marker: str) -> bytes:
    """A notebook that says which upload it is."""
    return json.dumps({"cells": [], "metadata": {"marker": marker}, "nbformat": 4, "nbformat_minor": 5}).encode()


def make_zip(path, entries, compression=zipfile.ZIP_DEFLATED):
    """``entries``: (name or ZipInfo, bytes), written in order (duplicates too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name, which is the point of some tests
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def special(name: str, mode: int, data: bytes = b"/etc/passwd") -> tuple[zipfile.ZipInfo, bytes]:
    """A Unix entry of another file type (a symbolic link's data is its target)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info, data


def gradescope(metadata: str, files: dict[str, bytes], root: str = "assignment_8046601_export/"):
    return [(f"{root}submission_metadata.yml", metadata.encode()), *((root + n, d) for n, d in files.items())]


def run(tmp_path, platform, entries, **kwargs):
    zip_path = make_zip(tmp_path / f"{platform}.zip", entries)
    return import_submissions(platform, zip_path, tmp_path / "subs", **kwargs)


def imported(report):
    """{submission: marker of the notebook written}."""
    return {
        i.student.submission: json.loads((report.out / i.student.submission).read_text())["metadata"]["marker"]
        for i in report.students
    }


def rows(report):
    return [
        (s.submission, s.user_id, s.name, s.email, s.sis_id, s.late, s.submitted_at)
        for s in load_roster(report.roster).students
    ]


def patch_headers(data: bytes, name: bytes, fmt: str, local_at: int, central_at: int, value) -> bytes:
    """Set a field of ``name``'s local header (30 bytes before its name) and central one (46 before)."""
    data = bytearray(data)
    first = data.find(name)
    second = data.find(name, first + 1)
    assert first > 0 and second > first
    struct.pack_into(fmt, data, first - 30 + local_at, value)
    struct.pack_into(fmt, data, second - 46 + central_at, value)
    return bytes(data)


# --- each platform's layout ---------------------------------------------------------------------------------------

GRADESCOPE_METADATA = """\
submission_409194023:
  :submitters:
  - :name: Alice Liddell
    :sid: '123456789'
    :email: alice@example.org
  :created_at: 2026-11-26 17:34:00.861687000 Z
  :score: 2.0
  :status: processed
  :results:
    score: 2.0
    output: |-
      Final Score: 2.0
submission_500000001:
  :submitters:
  - :name: Mad Hatter
    :sid: 111
    :email: hatter@example.org
  - :name: March Hare
    :email: Hare@Example.org
  :created_at: 2026-11-27 09:00:00.000000000 -07:00
submission_600000002:
  :submitters:
  - :name: Rabbit
    :sid: '333'
  :created_at: !ruby/object:ActiveSupport::TimeWithZone
    utc: 2026-11-25 08:00:00.000000000 Z
    zone: !ruby/object:ActiveSupport::TimeZone
      name: America/Los_Angeles
    time: 2026-11-25 00:00:00.000000000 Z
"""

LAYOUTS = {
    "canvas": (
        [
            ("liddellalice_101_5551_conv2d.ipynb", nb("alice")),
            ("hattermad_LATE_102_5552_conv2d.ipynb", nb("hatter")),
            ("müllerjürgen_103_5553_conv2d.ipynb", nb("jürgen")),
            ("o_brien2_104_5554_2024_hw_1.ipynb", nb("o'brien")),  # underscores and digits in name and file
        ],
        [
            ("canvas-102.ipynb", "102", "hattermad", None, None, True, None),
            ("canvas-101.ipynb", "101", "liddellalice", None, None, False, None),
            ("canvas-103.ipynb", "103", "müllerjürgen", None, None, False, None),
            ("canvas-104.ipynb", "104", "o_brien2", None, None, False, None),
        ],
        {"canvas-101.ipynb": "alice", "canvas-102.ipynb": "hatter", "canvas-103.ipynb": "jürgen"},
    ),
    "canvas anonymous": (
        [
            ("anon_Ab3xY_5551_conv2d.ipynb", nb("one")),
            ("LATE_anon_9zQ2k_5552_conv2d.ipynb", nb("two")),
        ],
        [
            ("canvas-anon-9zq2k-a6c0f753.ipynb", "anon_9zQ2k", None, None, None, True, None),
            ("canvas-anon-ab3xy-6dda0c73.ipynb", "anon_Ab3xY", None, None, None, False, None),
        ],
        {"canvas-anon-ab3xy-6dda0c73.ipynb": "one", "canvas-anon-9zq2k-a6c0f753.ipynb": "two"},
    ),
    "moodle": (
        [
            ("Alice Liddell_17_assignsubmission_file_/conv2d.ipynb", nb("alice")),
            ("Mad Hatter_18_assignsubmission_file_/work/in a folder/conv2d.ipynb", nb("hatter")),
            ("Team B-Jürgen Müller_19_assignsubmission_file_/conv2d.ipynb", nb("team")),
            ("Alice Liddell_17_assignsubmission_onlinetext_/onlinetext.html", b"<p>notes</p>"),
        ],
        [
            ("moodle-participant-17.ipynb", "Participant 17", "Alice Liddell", None, None, None, None),
            ("moodle-participant-18.ipynb", "Participant 18", "Mad Hatter", None, None, None, None),
            ("moodle-participant-19.ipynb", "Participant 19", "Team B-Jürgen Müller", None, None, None, None),
        ],
        {"moodle-participant-17.ipynb": "alice", "moodle-participant-18.ipynb": "hatter"},
    ),
    "moodle flat": (
        [
            ("Alice Liddell_17_assignsubmission_file_conv2d.ipynb", nb("alice")),
            ("Participant_23_assignsubmission_file_conv2d.ipynb", nb("blind")),  # blind marking
        ],
        [
            ("moodle-participant-17.ipynb", "Participant 17", "Alice Liddell", None, None, None, None),
            ("moodle-participant-23.ipynb", "Participant 23", None, None, None, None, None),
        ],
        {"moodle-participant-17.ipynb": "alice", "moodle-participant-23.ipynb": "blind"},
    ),
    "gradescope": (
        gradescope(
            GRADESCOPE_METADATA,
            {
                "submission_409194023/conv2d.ipynb": nb("alice"),
                "submission_409194023/helper.py": b"x = 1",
                "submission_500000001/work/conv2d.ipynb": nb("group"),
                "submission_500000001/.ipynb_checkpoints/conv2d-checkpoint.ipynb": nb("autosave"),
                "submission_600000002/conv2d.ipynb": nb("rabbit"),
            },
        ),
        [
            ("gradescope-sid-123456789.ipynb", "sid:123456789", "Alice Liddell", "alice@example.org", "123456789", None,
             datetime(2026, 11, 26, 17, 34, 0, 861687, tzinfo=UTC)),
            ("gradescope-sid-111.ipynb", "sid:111", "Mad Hatter", "hatter@example.org", "111", None,
             datetime(2026, 11, 27, 9, 0, tzinfo=PDT)),
            ("gradescope-hare@example.org-584e53e6.ipynb", "Hare@Example.org", "March Hare", "Hare@Example.org", None,
             None, datetime(2026, 11, 27, 9, 0, tzinfo=PDT)),
            ("gradescope-sid-333.ipynb", "sid:333", "Rabbit", None, "333", None, datetime(2026, 11, 25, 8, 0, tzinfo=UTC)),
        ],
        {"gradescope-sid-111.ipynb": "group", "gradescope-hare@example.org-584e53e6.ipynb": "group"},
    ),
    "gradescope without the export folder": (
        gradescope(GRADESCOPE_METADATA.split("submission_500000001")[0], {"submission_409194023/a.ipynb": nb("a")}, ""),
        [
            ("gradescope-sid-123456789.ipynb", "sid:123456789", "Alice Liddell", "alice@example.org", "123456789", None,
             datetime(2026, 11, 26, 17, 34, 0, 861687, tzinfo=UTC)),
        ],
        {"gradescope-sid-123456789.ipynb": "a"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_platform_layout_gives_one_notebook_and_one_roster_line_per_student(tmp_path, layout):
    entries, expected_rows, markers = LAYOUTS[layout]
    report = run(tmp_path, layout.split()[0], entries)
    assert rows(report) == expected_rows  # the roster loads back, every column as the download says
    assert sorted(p.name for p in report.out.iterdir()) == sorted([r[0] for r in expected_rows] + ["roster.csv"])
    assert markers.items() <= imported(report).items()  # each student's own notebook
    assert not report.skipped and not report.superseded


@pytest.mark.parametrize(
    "platform, entries, warning",
    [
        (
            "moodle",
            [("Alice Liddell_17_assignsubmission_file_/a.ipynb", nb("a"))],
            "participant number of this assignment, not by a user id",
        ),
        (
            "moodle",
            [("Participant_17_assignsubmission_file_/a.ipynb", nb("a"))],
            "(blind marking: the zip has no names either)",
        ),
        ("canvas", [("anon_Ab3xY_5551_a.ipynb", nb("a"))], "anonymous grading"),
        ("canvas", [("studenttest_104_5551_a.ipynb", nb("a"))], "looks like Canvas's Test Student"),
        (
            "canvas",
            [("liddellalice_101_5551_a.ipynb", nb("a")), ("grades.xlsx", b"x")],
            "not named as Canvas names submissions, so not read: grades.xlsx",
        ),
        (
            "gradescope",
            gradescope(GRADESCOPE_METADATA, {"submission_409194023/a.ipynb": nb("a"), "submission_7/b.ipynb": nb("b")}),
            "not in a submission folder the metadata lists, so not read: assignment_8046601_export/submission_7/b.ipynb",
        ),
    ],
)
def test_what_an_instructor_must_know_about_a_download_is_a_warning(tmp_path, platform, entries, warning):
    report = run(tmp_path, platform, entries)
    assert report.students
    assert any(warning in w for w in report.warnings), report.warnings


def test_stems_are_distinct_when_ids_differ_only_in_case(tmp_path):
    # Canvas's anonymous ids are case-sensitive base58; a case-insensitive disk must not merge two students
    report = run(tmp_path, "canvas", [("anon_Ab3xY_1_a.ipynb", nb("upper")), ("anon_ab3xY_2_a.ipynb", nb("lower"))])
    names = [i.student.submission for i in report.students]
    assert len({n.casefold() for n in names}) == 2
    assert sorted(imported(report).values()) == ["lower", "upper"]
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789.-_@") for n in names)


def test_gradescope_metadata_split_into_several_documents_is_read_whole(tmp_path):
    metadata = (
        "---\nsubmission_1:\n  :submitters:\n  - :sid: '111'\n  :results:\n    output: |+\n      IndexError\n\n"
        "...\nsubmission_2:\n  :submitters:\n  - :sid: '222'\n"
    )
    report = run(
        tmp_path, "gradescope", gradescope(metadata, {"submission_1/a.ipynb": nb("1"), "submission_2/b.ipynb": nb("2")})
    )
    assert [s.user_id for s in load_roster(report.roster).students] == ["sid:111", "sid:222"]


# --- resubmissions: the newest wins ---------------------------------------------------------------------------------


def gs_twice(first: str, second: str) -> str:
    return (
        f"submission_1:\n  :submitters:\n  - :sid: '7'\n{first}submission_2:\n  :submitters:\n  - :sid: '7'\n{second}"
    )


@pytest.mark.parametrize(
    "platform, entries, winner, superseded",
    [
        (  # one file name uploaded three times: Canvas numbers the copies, its attachment ids tell the order
            "canvas",
            [
                ("liddellalice_101_5551_conv2d.ipynb", nb("first")),
                ("liddellalice_101_5553_conv2d-1.ipynb", nb("third")),
                ("liddellalice_101_5552_conv2d-2.ipynb", nb("second")),
            ],
            "third",
            ["liddellalice_101_5551_conv2d.ipynb", "liddellalice_101_5552_conv2d-2.ipynb"],
        ),
        (  # the newer created_at wins over the larger submission id
            "gradescope",
            gradescope(
                gs_twice("  :created_at: 2026-11-27 10:00:00 Z\n", "  :created_at: 2026-11-26 10:00:00 Z\n"),
                {"submission_1/a.ipynb": nb("newer"), "submission_2/a.ipynb": nb("older")},
            ),
            "newer",
            ["assignment_8046601_export/submission_2/a.ipynb"],
        ),
        (  # the same time: the larger submission id
            "gradescope",
            gradescope(
                gs_twice("  :created_at: 2026-11-27 10:00:00 Z\n", "  :created_at: 2026-11-27 10:00:00 Z\n"),
                {"submission_1/a.ipynb": nb("smaller id"), "submission_2/a.ipynb": nb("larger id")},
            ),
            "larger id",
            ["assignment_8046601_export/submission_1/a.ipynb"],
        ),
        (  # a time missing: the submission ids alone
            "gradescope",
            gradescope(
                gs_twice("  :created_at: 2026-11-28 10:00:00 Z\n", ""),
                {"submission_1/a.ipynb": nb("smaller id"), "submission_2/a.ipynb": nb("larger id")},
            ),
            "larger id",
            ["assignment_8046601_export/submission_1/a.ipynb"],
        ),
    ],
)
def test_of_several_hand_ins_the_newest_is_imported_and_the_others_listed(
    tmp_path, platform, entries, winner, superseded
):
    report = run(tmp_path, platform, entries)
    assert list(imported(report).values()) == [winner]
    assert sorted(s.entry for s in report.superseded) == superseded
    assert all("superseded by the newer" in line for line in report.notes()[: len(superseded)])


# --- several files, or no notebook ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "platform, entries, reason",
    [
        (
            "canvas",
            [("hattermad_102_1_conv2d.ipynb", nb("a")), ("hattermad_102_2_scratch.ipynb", nb("b"))],
            "2 notebooks (conv2d.ipynb, scratch.ipynb)",
        ),
        ("canvas", [("hattermad_102_1_report.pdf", b"%PDF")], "no .ipynb notebook (handed in report.pdf)"),
        ("canvas", [("hattermad_LATE_102_text.html", b"<p>")], "no .ipynb notebook (handed in a text entry)"),
        ("canvas", [("hattermad_102_link.html", b"<a>")], "no .ipynb notebook (handed in a website URL)"),
        (
            "moodle",
            [("Mad Hatter_18_assignsubmission_onlinetext_/onlinetext.html", b"<p>")],
            "no .ipynb notebook (handed in an online text)",
        ),
        (
            "moodle",
            [
                ("Mad Hatter_18_assignsubmission_file_/a.ipynb", nb("a")),
                ("Mad Hatter_18_assignsubmission_file_/old/a.ipynb", nb("b")),
            ],
            "2 notebooks (a.ipynb, old/a.ipynb)",
        ),
        (
            "gradescope",
            gradescope(
                "submission_1:\n  :submitters:\n  - :name: Mad Hatter\n    :sid: '102'\n",
                {"submission_1/conv2d.py": b"x", "submission_1/.ipynb_checkpoints/conv2d-checkpoint.ipynb": nb("a")},
            ),
            "no .ipynb notebook (handed in conv2d.py, .ipynb_checkpoints/conv2d-checkpoint.ipynb)",
        ),
    ],
)
def test_a_student_with_several_notebooks_or_none_is_skipped_with_a_reason(tmp_path, platform, entries, reason):
    good = {
        "canvas": [("liddellalice_101_9_conv2d.ipynb", nb("alice"))],
        "moodle": [("Alice Liddell_17_assignsubmission_file_/conv2d.ipynb", nb("alice"))],
        "gradescope": [],
    }[platform]
    if platform == "gradescope":  # a second submission in the same export
        meta, *files = entries
        entries = [
            (meta[0], meta[1] + b"submission_2:\n  :submitters:\n  - :name: Alice\n    :sid: '101'\n"),
            *files,
            ("assignment_8046601_export/submission_2/conv2d.IPYNB", nb("alice")),  # the suffix in any case
        ]
    report = run(tmp_path, platform, good + entries)
    assert list(imported(report).values()) == ["alice"]
    [skipped] = report.skipped
    assert reason in skipped.reason
    assert f"skipped {skipped.who}: {skipped.reason}" in report.notes()


# --- a stranger's zip ----------------------------------------------------------------------------------------------

GOOD = ("liddellalice_101_5551_conv2d.ipynb", nb("alice"))


@pytest.mark.parametrize(
    "entry, warning",
    [
        (("../hattermad_102_1_conv2d.ipynb", nb("x")), "a '..', '.' or empty part in its path"),
        (("a/../../hattermad_102_1_conv2d.ipynb", nb("x")), "a '..', '.' or empty part in its path"),
        (("/tmp/hattermad_102_1_conv2d.ipynb", nb("x")), "an absolute path"),
        (("C:/hattermad_102_1_conv2d.ipynb", nb("x")), "an absolute path"),
        (("..\\..\\hattermad_102_1_conv2d.ipynb", nb("x")), "a backslash in its path"),
        (("hatter\x1b[2Jmad_102_1_conv2d.ipynb", nb("x")), "a control character in its name"),
        (special("hattermad_102_1_conv2d.ipynb", stat.S_IFLNK | 0o777), "a symbolic link"),
        (special("hattermad_102_1_conv2d.ipynb", stat.S_IFIFO | 0o644), "not a regular file"),
    ],
)
def test_an_entry_with_a_dangerous_name_or_type_is_never_read(tmp_path, entry, warning):
    report = run(tmp_path, "canvas", [GOOD, entry])
    assert imported(report) == {"canvas-101.ipynb": "alice"}
    assert any(warning in w for w in report.warnings), report.warnings
    assert "\x1b" not in "".join(report.notes())  # shown escaped, never sent to the terminal
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["canvas-101.ipynb", "canvas.zip", "roster.csv", "subs"]


def test_a_name_twice_in_the_zip_is_not_read_at_all(tmp_path):
    report = run(
        tmp_path,
        "canvas",
        [GOOD, ("hattermad_102_1_conv2d.ipynb", nb("one")), ("hattermad_102_1_conv2d.ipynb", nb("two"))],
    )
    assert imported(report) == {"canvas-101.ipynb": "alice"}
    assert any("more than once; none of the copies is read: hattermad_102_1_conv2d.ipynb" in w for w in report.warnings)


def deflated_zeros(path, size: int):
    return make_zip(path, [GOOD, ("hattermad_102_1_conv2d.ipynb", b"\0" * size)])


@pytest.mark.parametrize(
    "build, limits, reason",
    [
        (  # a zip bomb: 64 MB of zeros in a few kB
            lambda p: deflated_zeros(p, 64 * 2**20),
            ImportLimits(max_notebook_bytes=2**20),
            "64.0 MB uncompressed, over the limit of 1.0 MB",
        ),
        (  # the same, its header claiming 100 bytes: reading stops there, and the CRC gives it away
            lambda p: p.write_bytes(
                patch_headers(deflated_zeros(p, 64 * 2**20).read_bytes(), b"hattermad_102", "<I", 22, 24, 100)
            ),
            ImportLimits(max_notebook_bytes=2**20),
            "damaged in the zip",
        ),
        (  # under the per-file limit, over what is left of the total
            lambda p: make_zip(p, [GOOD, ("hattermad_102_1_conv2d.ipynb", b" " * 800_000)]),
            ImportLimits(max_total_bytes=700_000),
            "the import's total limit of 0.7 MB is used up",
        ),
    ],
)
def test_uncompressed_sizes_are_capped_per_notebook_and_in_total(tmp_path, build, limits, reason):
    build(tmp_path / "canvas.zip")
    report = import_submissions("canvas", tmp_path / "canvas.zip", tmp_path / "subs", limits=limits)
    assert imported(report) == {"canvas-101.ipynb": "alice"}
    [skipped] = report.skipped
    assert skipped.who == "hattermad (102)" and reason in skipped.reason
    assert sorted(p.name for p in report.out.iterdir()) == ["canvas-101.ipynb", "roster.csv"]  # no partial file


def test_the_cap_holds_even_when_the_zip_library_returns_more_than_the_header_says(tmp_path, monkeypatch):
    # Python's zipfile stops at the declared size; the copy does not rely on that
    path = make_zip(tmp_path / "canvas.zip", [GOOD, ("hattermad_102_1_conv2d.ipynb", b"{}")])
    real_open = zipfile.ZipFile.open

    def endless(self, name, *args, **kwargs):
        if getattr(name, "filename", name).startswith("hattermad"):
            return io.BytesIO(b" " * (3 * 2**20))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", endless)
    report = import_submissions("canvas", path, tmp_path / "subs", limits=ImportLimits(max_notebook_bytes=2**20))
    assert imported(report) == {"canvas-101.ipynb": "alice"}
    assert "more than 1.0 MB uncompressed" in report.skipped[0].reason
    assert sorted(p.name for p in report.out.iterdir()) == ["canvas-101.ipynb", "roster.csv"]  # the part removed


def corrupt(data: bytes) -> bytes:
    """Flip bytes in the middle of hattermad's data, as a bad download would."""
    name = b"hattermad_102_1_conv2d.ipynb"
    at = data.find(name) + len(name) + 8
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + 4]) + data[at + 4 :]


@pytest.mark.parametrize(
    "compression, damage, reason",
    [
        (zipfile.ZIP_STORED, corrupt, "damaged in the zip (Bad CRC-32"),
        (zipfile.ZIP_DEFLATED, corrupt, "damaged in the zip"),
        (zipfile.ZIP_STORED, lambda d: patch_headers(d, b"hattermad_102", "<H", 6, 8, 0x1), "conv2d.ipynb: encrypted"),
        (zipfile.ZIP_BZIP2, lambda d: d, "compressed with method 12, which LMS downloads do not use"),
    ],
)
def test_a_damaged_entry_skips_its_student_only(tmp_path, compression, damage, reason):
    hatter = zipfile.ZipInfo("hattermad_102_1_conv2d.ipynb")
    hatter.compress_type = compression
    path = make_zip(
        tmp_path / "canvas.zip", [(hatter, nb("x" * 1000)), ("rabbitwhite_103_2_conv2d.ipynb", nb("rabbit"))]
    )
    path.write_bytes(damage(path.read_bytes()))
    report = import_submissions("canvas", path, tmp_path / "subs")
    assert list(imported(report).values()) == ["rabbit"]
    assert [s.who for s in report.skipped] == ["hattermad (102)"]
    assert reason in report.skipped[0].reason


@pytest.mark.parametrize(
    "name_bytes, expected",
    [
        ("müller".encode(), "müller"),  # UTF-8 without the flag, as many zip tools write: recovered
        ("m\xfcller".encode("latin-1"), "m\u207fller"),  # Latin-1: read as CP437, as the standard says, and said so
    ],
)
def test_entry_names_not_marked_utf8_are_read(tmp_path, name_bytes, expected):
    placeholder = b"Q" * len(name_bytes)
    path = make_zip(
        tmp_path / "canvas.zip", [(f"{placeholder.decode()}_102_1_conv2d.ipynb", nb("x"))], zipfile.ZIP_STORED
    )
    path.write_bytes(path.read_bytes().replace(placeholder, name_bytes))
    report = import_submissions("canvas", path, tmp_path / "subs")
    assert [s.name for s in load_roster(report.roster).students] == [expected]
    assert any("names not in UTF-8" in w for w in report.warnings) == (expected != "müller")


def flagged_utf8_but_not(path):
    make_zip(path, [("QQ_102_1_conv2d.ipynb", nb("x"))], zipfile.ZIP_STORED)
    data = path.read_bytes().replace(b"QQ", b"\xff\xfe")
    path.write_bytes(patch_headers(data, b"\xff\xfe_102", "<H", 6, 8, 0x800))


def truncated(path):
    make_zip(path, [GOOD])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "platform, build, message",
    [
        ("canvas", lambda p: p.write_text("submission,user_id\n"), "not a zip file, or a truncated one"),
        ("canvas", truncated, "not a zip file, or a truncated one"),
        ("canvas", lambda p: p.write_bytes(b""), "not a zip file, or a truncated one"),
        ("canvas", lambda p: p.mkdir(), "a folder, not the zip the LMS downloaded"),
        ("canvas", lambda p: None, "no such file"),
        ("canvas", flagged_utf8_but_not, "an entry's name is marked UTF-8 but is not"),
        (
            "canvas",
            lambda p: make_zip(p, [("Alice Liddell_17_assignsubmission_file_/a.ipynb", nb("a"))]),
            "no Canvas submission in it; is it a Canvas download? It holds Alice Liddell_17_",
        ),
        ("moodle", lambda p: make_zip(p, [("../x", b"")]), "it holds no file that could be read (zip entry ../x"),
        ("canvas", lambda p: make_zip(p, [("hattermad_102_1_report.pdf", b"%PDF")]), "nothing to import: hattermad"),
        ("gradescope", lambda p: make_zip(p, [GOOD]), "no submission_metadata.yml"),
        ("gradescope", lambda p: make_zip(p, gradescope("a: [b\n", {})), "not valid YAML"),
        ("gradescope", lambda p: make_zip(p, gradescope("- a\n- b\n", {})), "not Gradescope's metadata"),
        (
            "gradescope",
            lambda p: make_zip(p, gradescope("submission_1: !!python/object/apply:os.system ['touch pwned']\n", {})),
            "not valid YAML: could not determine a constructor",
        ),
        (
            "gradescope",
            lambda p: make_zip(p, gradescope("submission_1:\n  :submitters: []\n", {"submission_1/a.ipynb": nb("a")})),
            "no Gradescope submission in it",
        ),
        ("canvas", lambda p: make_zip(p, [(f"x{i}", b"") for i in range(6)]), "more than 5 entries"),
        ("mahara", lambda p: make_zip(p, [GOOD]), "unknown platform 'mahara'"),
    ],
)
def test_an_unusable_zip_is_an_error_and_nothing_is_written(tmp_path, monkeypatch, platform, build, message):
    monkeypatch.chdir(tmp_path)
    build(tmp_path / "download.zip")
    with pytest.raises(LmsError) as raised:
        import_submissions(platform, tmp_path / "download.zip", tmp_path / "subs", limits=ImportLimits(max_entries=5))
    assert message in str(raised.value)
    assert not (tmp_path / "subs").exists() or not any((tmp_path / "subs").iterdir())
    assert not (tmp_path / "pwned").exists()


def test_gradescope_metadata_over_its_limit_is_an_error(tmp_path):
    path = make_zip(tmp_path / "g.zip", gradescope(GRADESCOPE_METADATA, {}))
    with pytest.raises(LmsError, match="submission_metadata.yml: .* over the limit of"):
        import_submissions("gradescope", path, tmp_path / "subs", limits=ImportLimits(max_metadata_bytes=100))


# --- the submissions folder -----------------------------------------------------------------------------------------


def test_a_folder_that_is_not_empty_is_refused_unless_forced(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "stale.ipynb").write_bytes(nb("stale"))
    path = make_zip(tmp_path / "canvas.zip", [GOOD])
    with pytest.raises(ResultsError, match="not empty; .* --force"):
        import_submissions("canvas", path, subs)
    report = import_submissions("canvas", path, subs, force=True)
    assert imported(report) == {"canvas-101.ipynb": "alice"}
    assert any("also holds notebooks this import did not write" in w and "stale.ipynb" in w for w in report.warnings)


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "subs").write_text("x")
    with pytest.raises(ResultsError, match="not a folder"):
        import_submissions("canvas", make_zip(tmp_path / "canvas.zip", [GOOD]), tmp_path / "subs")


# --- from the download to the LMS's gradebook ----------------------------------------------------------------------

END_TO_END = {
    "canvas": [("liddellalice_101_5551_conv2d.ipynb", nb("a")), ("hattermad_LATE_102_5552_conv2d.ipynb", nb("b"))],
    "moodle": [
        ("Alice Liddell_17_assignsubmission_file_/conv2d.ipynb", nb("a")),
        ("Mad Hatter_18_assignsubmission_file_/conv2d.ipynb", nb("b")),
    ],
    "gradescope": gradescope(
        "submission_1:\n  :submitters:\n  - :name: Alice Liddell\n    :sid: '123456789'\n    :email: alice@example.org\n"
        "submission_2:\n  :submitters:\n  - :name: Mad Hatter\n    :email: hatter@example.org\n",
        {"submission_1/conv2d.ipynb": nb("a"), "submission_2/conv2d.ipynb": nb("b")},
    ),
}

# (platform, export, options, the identifying cells of each student's row, whose grades are 10 then 6)
EXPORTS = [
    ("canvas", "canvas", {}, [["hattermad", "102", "", "", ""], ["liddellalice", "101", "", "", ""]]),
    ("moodle", "moodle", {}, [["Alice Liddell", "Participant 17"], ["Mad Hatter", "Participant 18"]]),
    ("gradescope", "canvas", {}, [["Alice Liddell", "", "123456789", "", ""], ["Mad Hatter", "", "", "", ""]]),
    (
        "gradescope",
        "moodle",
        {"map_by": "Email address"},
        [
            ["Alice Liddell", "alice@example.org", "sid:123456789"],
            ["Mad Hatter", "hatter@example.org", "hatter@example.org"],
        ],
    ),
]


@pytest.mark.parametrize("platform, export, options, identities", EXPORTS)
def test_the_imported_roster_exports_each_students_grade(tmp_path, platform, export, options, identities):
    report = run(tmp_path, platform, END_TO_END[platform])
    # what `grader batch` writes for the imported notebooks: the first student full marks, the second 3 of 5 checks
    by_marker = {imported(report)[i.student.submission]: i.student for i in report.students}
    results = tmp_path / "results"
    write_results(
        results,
        {
            by_marker["a"].key: make_result(by_marker["a"].submission),
            by_marker["b"].key: make_result(by_marker["b"].submission, passed=3),
        },
    )
    out = tmp_path / "grades.csv"
    exported = (export_canvas if export == "canvas" else export_moodle)(results, report.roster, out, **options)
    assert not exported.matching.missing and not exported.matching.unmatched
    table = list(csv.reader(io.StringIO(out.read_text())))
    body = table[2:] if export == "canvas" else table[1:]
    grades = {row[0]: row[len(identities[0])] for row in body}
    assert grades == {by_marker["a"].name or "": "10", by_marker["b"].name or "": "6"}
    assert sorted(row[: len(identities[0])] for row in body) == identities


@pytest.mark.parametrize("platform", sorted(END_TO_END))
def test_the_imported_roster_gives_one_lti_score_per_student(tmp_path, platform):
    report = run(tmp_path, platform, END_TO_END[platform])
    results = tmp_path / "results"
    write_results(results, {i.student.key: make_result(i.student.submission) for i in report.students})
    scores = export_lti(results, report.roster, tmp_path / "scores.json").scores
    assert sorted(s.user_id for s in scores) == sorted(i.student.user_id for i in report.students)
    assert all(s.score_given == 10 for s in scores)


# --- the command ---------------------------------------------------------------------------------------------------


def test_the_command_imports_prints_a_summary_and_the_problems(tmp_path, capsys):
    path = make_zip(tmp_path / "canvas.zip", [GOOD, ("hattermad_102_1_report.pdf", b"%PDF"), ("../x", b"")])
    assert main(["import", "canvas", str(path), "--out", str(tmp_path / "subs")]) == 0
    out, err = capsys.readouterr()
    assert "1 notebook(s) imported into" in out and f"--roster {tmp_path / 'subs' / 'roster.csv'}" in out
    assert "grader: warning: skipped hattermad (102): no .ipynb notebook (handed in report.pdf)" in err
    assert "grader: warning: zip entry ../x not read" in err
    assert load_roster(tmp_path / "subs" / "roster.csv").students[0].user_id == "101"


@pytest.mark.parametrize(
    "args, message",
    [
        (["import", "canvas", "{tmp}/nothing.zip", "--out", "{tmp}/subs"], "nothing.zip: no such file"),
        (["import", "canvas", "{tmp}/canvas.zip", "--out", "{tmp}/full"], "not empty; import into a new folder"),
    ],
)
def test_the_command_exits_3_when_the_zip_or_the_folder_is_unusable(tmp_path, capsys, args, message):
    make_zip(tmp_path / "canvas.zip", [GOOD])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.ipynb").write_text("{}")
    assert main([a.format(tmp=tmp_path) for a in args]) == 3
    assert message in capsys.readouterr().err
