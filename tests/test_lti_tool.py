"""The grader as an LTI 1.3 tool, against a loopback platform (tests/lti_platform.py)
that implements the token endpoint, line items, memberships, and Canvas's and
Moodle's rules for scores: the key and its JWKS, the registration file, the
client-credentials grant, line items found or created, the roster from NRPS,
and publishing that never late-marks, erases or double-counts a grade."""

import json
import os
import stat
from datetime import UTC, datetime

import jwt
import pytest
from lti_platform import INSTRUCTOR, LINEITEMS, MEMBERSHIPS, Platform
from result_factory import make_result, write_results

from grader.cli import main
from grader.errors import LmsError
from grader.platforms.lti.keys import generate_key, load_private_key
from grader.platforms.lti.lineitems import lineitem_for
from grader.platforms.lti.memberships import fetch_members, roster_from_members
from grader.platforms.lti.scores import Score, publish_lti, publish_scores
from grader.platforms.lti.services import ServiceClient, next_link
from grader.platforms.lti.tool import TokenClient, load_tool_config
from grader.platforms.roster import load_roster, write_roster


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "lti-key.pem"
    return path, generate_key(path)


@pytest.fixture
def lms(key_file):
    _, public = key_file
    with Platform(jwks=public) as platform:
        for user, given, family, email in (
            ("a1f0-uuid", "Alice", "Liddell", "alice@example.org"),
            ("b2e1-uuid", "Bob", "Builder", "bob@example.org"),
            ("c3d2-uuid", "Carol", "Singer", None),
        ):
            platform.member(user, given, family, email=email)
        platform.member("t9-uuid", "Terry", "Teacher", role=INSTRUCTOR)
        platform.member("d4-uuid", "Dropped", "Out", status="Inactive")
        yield platform


@pytest.fixture
def tool(lms, key_file, tmp_path):
    return TokenClient(load_tool_config(lms.tool_config(tmp_path, key_file[0])))


# --- the key ---------------------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads_and_prints_the_jwks(tmp_path, capsys):
    key = tmp_path / "key.pem"
    assert main(["lti", "keygen", "--out", str(key)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    (jwk,) = printed["keys"]
    assert set(jwk) == {"kty", "n", "e", "kid", "alg", "use"} and (jwk["alg"], jwk["use"]) == ("RS256", "sig")
    assert "d" not in jwk and "p" not in jwk  # public half only
    assert main(["lti", "jwks", str(key)]) == 0
    assert json.loads(capsys.readouterr().out) == printed  # the kid is the key's thumbprint: the same every time
    assert main(["lti", "jwks", "--pem", str(key)]) == 0
    pem = capsys.readouterr().out
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in pem
    assert main(["lti", "keygen", "--out", str(key)]) == 3  # the platform holds this key: not replaced by accident
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a key", "not an unencrypted PEM private key"),
        (b"", "not an unencrypted PEM private key"),
    ],
)
def test_a_key_file_that_is_not_an_rsa_key_is_named(tmp_path, content, message):
    path = tmp_path / "key.pem"
    path.write_bytes(content)
    with pytest.raises(LmsError, match=message):
        load_private_key(path)
    with pytest.raises(LmsError, match="cannot read the tool's key"):
        load_private_key(tmp_path / "absent.pem")


# --- the registration ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ('client_id = "1"\n', "issuer: Field required"),
        ('issuer = "x"\nclient_id = "1"\ntoken_url = "https://t"\nkey = "k.pem"\n', "issuer: 'x' is not an http"),
        (
            'issuer = "https://i"\nclient_id = "1"\ntoken_url = "https://t"\nkey = "k.pem"\nclientid = "2"\n',
            "clientid: Extra inputs are not permitted",
        ),
        ('issuer = "https://i"\nclient_id = ""\ntoken_url = "https://t"\nkey = "k.pem"\n', "client_id: String should"),
        ('issuer = "https://i\n', "not valid TOML"),
    ],
)
def test_registration_errors_name_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "tool.toml"
    path.write_text(text)
    with pytest.raises(LmsError, match=message) as caught:
        load_tool_config(path)
    assert str(path) in str(caught.value)


def test_the_key_path_is_relative_to_the_registration(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "tool.toml"
    path.write_text('issuer = "https://i"\nclient_id = "1"\ntoken_url = "https://t/token"\nkey = "k.pem"\n')
    assert load_tool_config(path).key == tmp_path / "conf" / "k.pem"


# --- the client-credentials grant ----------------------------------------------------------------------------------


def test_the_assertion_is_rs256_signed_for_the_token_url_with_a_fresh_jti(tool, key_file):
    first, second = tool.assertion(), tool.assertion()
    header = jwt.get_unverified_header(first)
    assert header["alg"] == "RS256" and header["kid"] == key_file[1]["keys"][0]["kid"]
    key = jwt.PyJWK(key_file[1]["keys"][0]).key
    claims = jwt.decode(first, key, algorithms=["RS256"], audience=tool.config.token_url)
    assert claims["iss"] == claims["sub"] == tool.config.client_id
    assert claims["exp"] - claims["iat"] == 60
    assert claims["jti"] != jwt.decode(second, key, algorithms=["RS256"], audience=tool.config.token_url)["jti"]


def test_a_token_is_obtained_once_and_kept_until_it_expires(tool, lms):
    scopes = ["https://purl.imsglobal.org/spec/lti-ags/scope/score"]
    token = tool.token(scopes)
    assert tool.token(scopes) == token and lms.state.token_requests == 1
    lms.state.token_lifetime = 20  # shorter than the margin: each token is as good as expired
    tool._tokens.clear()
    assert tool.token(scopes) != tool.token(scopes) and lms.state.token_requests == 3


@pytest.mark.parametrize(
    "change, message",
    [
        ({"client_id": "someone-else"}, "HTTP 401: invalid_client: unknown client"),
        ({"jwks": {"keys": []}}, "HTTP 401: invalid_client"),  # the platform holds another key
        ({"allowed_scopes": set()}, "HTTP 400: invalid_scope"),
    ],
)
def test_a_refused_token_says_what_to_check(tool, lms, change, message):
    for name, value in change.items():
        setattr(lms.state, name, value)
    with pytest.raises(LmsError, match=message) as caught:
        tool.token(["https://purl.imsglobal.org/spec/lti-ags/scope/score"])
    assert "grader lti keygen" in str(caught.value)


def test_the_platform_refuses_an_assertion_for_another_audience_or_replayed(tool, lms, tmp_path, key_file):
    other = TokenClient(load_tool_config(lms.tool_config(tmp_path, key_file[0], audience="https://elsewhere/token")))
    with pytest.raises(LmsError, match="Audience doesn.t match"):
        other.token(["https://purl.imsglobal.org/spec/lti-ags/scope/score"])
    assertion = tool.assertion()
    tool.assertion = lambda: assertion  # the same jti twice
    tool.token(["https://purl.imsglobal.org/spec/lti-ags/scope/score"])
    with pytest.raises(LmsError, match="jti replayed"):
        tool.token(["https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"])


# --- line items and memberships -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, target",
    [
        ('<https://lms/x?page=2>; rel="next"', "https://lms/x?page=2"),
        ('<https://lms/x?page=1>; rel="first", <https://lms/x?page=3>; rel="next"', "https://lms/x?page=3"),
        ('<https://lms/x?page=9>; rel="last"', None),
        ("<https://lms/x?page=2>; rel=next", "https://lms/x?page=2"),
        (None, None),
    ],
)
def test_next_link(header, target):
    assert next_link(header) == target


def test_the_line_item_is_found_on_any_page_by_resource_id_and_tag(tool, lms):
    for name in ("lab1", "lab2", "lab3"):
        lms.lineitem(name)
    lms.lineitem("conv2d", tag="other-tool")  # another tool's column with the same resource id
    wanted = lms.lineitem("conv2d")
    lms.state.page_size = 1
    client = ServiceClient(tool.token)
    lms.state.lineitems["5"]["resourceId"] = "conv2d"
    # the platform ignores the query filters here; the grader checks what comes back
    found = lineitem_for(client, lms.url(LINEITEMS), resource_id="conv2d", label="Conv2D", score_maximum=10)
    assert found.id == wanted and len(lms.state.lineitems) == 5


def test_a_missing_line_item_is_created_with_the_points_and_title(tool, lms):
    client = ServiceClient(tool.token)
    made = lineitem_for(client, lms.url(LINEITEMS), resource_id="conv2d", label="Conv2D filters", score_maximum=10)
    assert lms.state.lineitems["1"] == {
        "scoreMaximum": 10,
        "label": "Conv2D filters",
        "resourceId": "conv2d",
        "tag": "grader",
    }
    again = lineitem_for(client, lms.url(LINEITEMS), resource_id="conv2d", label="Conv2D filters", score_maximum=10)
    assert again.id == made.id and len(lms.state.lineitems) == 1
    lms.lineitem("conv2d")
    with pytest.raises(LmsError, match="2 line items have resourceId 'conv2d'"):
        lineitem_for(client, lms.url(LINEITEMS), resource_id="conv2d", label="x", score_maximum=10)


def test_the_roster_is_every_active_learner_over_all_pages(tool, lms, tmp_path):
    lms.state.page_size = 2
    members = fetch_members(ServiceClient(tool.token), lms.url(MEMBERSHIPS))
    assert len(members) == 5  # three pages
    made = roster_from_members(members)
    assert [(s.user_id, s.name, s.submission) for s in made.students] == [
        ("a1f0-uuid", "Alice Liddell", "a1f0-uuid.ipynb"),
        ("b2e1-uuid", "Bob Builder", "b2e1-uuid.ipynb"),
        ("c3d2-uuid", "Carol Singer", "c3d2-uuid.ipynb"),
    ]


def test_the_roster_joins_a_downloaded_class_by_id_sis_email_or_name(tool, lms, tmp_path):
    """A Canvas download names students ``lastnamefirstname`` with Canvas's
    numeric ids, which are not the LTI user ids: the join finds them anyway."""
    from grader.platforms.roster import Student

    imported = [
        Student(submission="liddellalice.ipynb", user_id="101", name="liddellalice", submitted_at="2026-11-20T10:00Z"),
        Student(submission="bob.ipynb", user_id="102", email="BOB@example.org"),
        Student(submission="zed.ipynb", user_id="109", name="Zed Nobody"),
    ]
    joined = roster_from_members(
        fetch_members(ServiceClient(tool.token), lms.url(MEMBERSHIPS)),
        load_roster(write_roster(tmp_path / "imported.csv", imported)),
    )
    assert [(s.submission, s.user_id) for s in joined.students] == [
        ("liddellalice.ipynb", "a1f0-uuid"),
        ("bob.ipynb", "b2e1-uuid"),
    ]
    assert joined.students[0].submitted_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert any(n.startswith("Zed Nobody (109) (zed.ipynb): no student of the platform") for n in joined.notes)
    assert any(n.startswith("Carol Singer (c3d2-uuid) has no submission") for n in joined.notes)


def test_cli_roster_writes_a_roster_the_exports_read(lms, key_file, tmp_path, capsys):
    config = lms.tool_config(tmp_path, key_file[0])
    assert main(["lti", "roster", "--tool", str(config), "--out", str(tmp_path / "roster.csv")]) == 0
    assert "3 students written" in capsys.readouterr().out
    assert [s.user_id for s in load_roster(tmp_path / "roster.csv").students] == ["a1f0-uuid", "b2e1-uuid", "c3d2-uuid"]


# --- publishing: Canvas's rules ------------------------------------------------------------------------------------

ROSTER = """submission,user_id,name,submitted_at
alice,a1f0-uuid,Alice,2026-11-20T10:00:00+00:00
bob,b2e1-uuid,Bob,2026-11-21T09:30:00+00:00
carol,c3d2-uuid,Carol,
"""


@pytest.fixture
def klass(tmp_path):
    results = tmp_path / "results"
    write_results(
        results,
        {
            "alice": make_result("alice.ipynb", graded_at="2026-12-01T08:00:00.000+00:00"),
            "bob": make_result("bob.ipynb", passed=3, graded_at="2026-12-01T08:00:01.000+00:00"),
            "carol": make_result("carol.ipynb", passed=4, graded_at="2026-12-01T08:00:02.000+00:00"),
        },
    )
    roster = tmp_path / "roster.csv"
    roster.write_text(ROSTER)
    return results, roster


def canvas_view(lms, item="1"):
    return {u: (g.score, g.attempts, g.late) for (i, u), g in lms.state.grades.items() if i == item}


def test_without_the_extension_canvas_stamps_every_attempt_now_and_late(tool, lms, klass):
    """The platform rule the extension is for: a plain Score after the due date is a late attempt."""
    item = lms.lineitem("conv2d")
    plain = Score(
        user_id="a1f0-uuid",
        score_given=10,
        score_maximum=10,
        activity_progress="Completed",
        grading_progress="FullyGraded",
        timestamp="2026-12-01T08:00:00.000+00:00",
    )
    publish_scores([plain], item, tool.token(["https://purl.imsglobal.org/spec/lti-ags/scope/score"]))
    assert canvas_view(lms) == {"a1f0-uuid": (10, 1, True)}


def test_canvas_publishing_after_the_due_date_keeps_submission_times_and_regrades_make_no_attempt(tool, lms, klass):
    results, roster = klass
    report = publish_lti(results, roster, tool=tool)  # the line item is created
    assert report.ok, report.notes()
    # Alice handed in on time, Bob a day late; Carol's time is unknown, so no attempt is stamped for her
    assert canvas_view(lms) == {"a1f0-uuid": (10, 1, False), "b2e1-uuid": (6, 1, True), "c3d2-uuid": (8, 0, False)}
    write_results(results, {"bob": make_result("bob.ipynb", passed=5, graded_at="2026-12-02T08:00:00.000+00:00")})
    again = publish_lti(results, roster, tool=tool)
    assert again.ok, again.notes()
    assert canvas_view(lms) == {"a1f0-uuid": (10, 1, False), "b2e1-uuid": (10, 1, True), "c3d2-uuid": (8, 0, False)}
    assert lms.state.token_requests == 1  # one token served both publishes


def test_canvas_attempt_limit_is_met_by_grading_the_existing_submission(tool, lms, klass):
    results, roster = klass
    item = lms.lineitem("conv2d")
    lms.state.allowed_attempts, lms.state.results_readable = 1, False
    lms.state.grades[("1", "a1f0-uuid")] = type(lms.state.grade("1", "x"))(score=4, attempts=1)
    report = publish_lti(results, roster, item, tool=tool)
    assert report.ok, report.notes()
    alice = next(p for p in report.posted if p.user_id == "a1f0-uuid")
    assert "no attempt left for a new submission (422)" in alice.detail
    assert canvas_view(lms)["a1f0-uuid"] == (10, 1, False)
    assert any("results could not be read" in n for n in report.notes())


def test_a_grader_failure_never_clears_what_canvas_holds(tool, lms, klass):
    results, roster = klass
    item = lms.lineitem("conv2d")
    lms.state.grades[("1", "c3d2-uuid")] = type(lms.state.grade("1", "x"))(score=7, attempts=1)
    write_results(results, {"carol": make_result("carol.ipynb", passed=0, status="error", error="MemoryError")})
    report = publish_lti(results, roster, item, tool=tool)
    assert report.ok and [p.user_id for p in report.posted] == ["a1f0-uuid", "b2e1-uuid"]
    assert canvas_view(lms)["c3d2-uuid"] == (7, 1, False)


# --- publishing: Moodle's rules ------------------------------------------------------------------------------------


def test_moodle_republishing_is_idempotent_and_an_invalid_notebook_is_a_kept_zero(tool, lms, klass):
    results, roster = klass
    lms.state.kind = "moodle"
    item = lms.lineitem("conv2d")
    write_results(
        results,
        {"carol": make_result("carol.ipynb", passed=0, status="invalid_submission", error="not a notebook")},
    )
    first = publish_lti(results, roster, item, tool=tool)
    again = publish_lti(results, roster, item, tool=tool)
    assert first.ok and again.ok, again.notes()
    assert [p.status for p in again.posted] == [409, 409, 409]
    assert {u: g.score for (_, u), g in lms.state.grades.items()} == {"a1f0-uuid": 10, "b2e1-uuid": 6, "c3d2-uuid": 0}


def test_cli_publish_with_the_tool_finds_the_line_item_and_reports(lms, key_file, klass, tmp_path, capsys):
    results, roster = klass
    item = lms.lineitem("conv2d")
    config = lms.tool_config(tmp_path, key_file[0])
    assert main(["publish", "lti", str(results), "--roster", str(roster), "--tool", str(config)]) == 0
    assert f"3 of 3 scores accepted by {item}" in capsys.readouterr().out
    assert main(["publish", "lti", str(results), "--roster", str(roster), "--tool", str(config), "--token", "x"]) == 3
    assert "not both" in capsys.readouterr().err
