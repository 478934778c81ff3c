"""Command line: reads arguments, calls the library, writes output.

Exit codes: 0 success (a result was produced, whatever the score); 1 ``check``
below full marks, ``validate`` failed, or ``publish`` had scores rejected or
not delivered; 2 usage error; 3 operator error
(unknown assignment, invalid spec, unwritable results folder); 4 broken
reference solution; 5 the executor could not run (kernel would not start).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from grader.errors import GraderError

if TYPE_CHECKING:  # the commands import what they need when they run
    from grader.execution.base import Executor
    from grader.model.assignment import Assignment
    from grader.model.result import Result


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GraderError as exc:
        print(f"grader: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("grader: interrupted; results already written are kept", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grader",
        description="Grade Jupyter notebook exercises: execute, extract answers, check them, report JSON.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def server_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--server",
            metavar="URL",
            help="use a running `grader serve` at URL instead of grading here (token: $GRADER_SERVER_TOKEN); "
            "its own executor and time limits apply",
        )

    def execution_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--no-isolation",
            action="store_true",
            help="run students' code without the sandbox (trusted notebooks only); results say so",
        )
        p.add_argument(
            "--require-isolation",
            action="store_true",
            help="refuse to grade unless full isolation is available (see `grader doctor`)",
        )
        p.add_argument(
            "--executor",
            choices=("warm", "kernel"),
            default="warm",
            help="warm (default): each notebook in a fresh process forked from a parent that already imported "
            "TensorFlow; kernel: a fresh Jupyter kernel per notebook (the reference, slower)",
        )
        p.add_argument(
            "--cell-timeout", type=float, metavar="SECONDS", help="seconds one cell may run (default: the spec's, 60)"
        )
        p.add_argument(
            "--notebook-timeout",
            type=float,
            metavar="SECONDS",
            help="seconds the whole notebook may run (default: the spec's, 300)",
        )

    p = add("grade", cmd_grade, "Grade one notebook and print the result JSON.")
    p.add_argument("notebook", type=Path)
    p.add_argument("--assignment", "-a", help="assignment name or folder (default: from the notebook's metadata)")
    execution_options(p)

    p = add(
        "import",
        cmd_import,
        "Turn an LMS's bulk download of submissions (a zip) into SUBMISSIONS_DIR/<student>.ipynb and a roster.csv.",
    )
    p.add_argument("platform", choices=("canvas", "moodle", "gradescope"))
    p.add_argument("zip", type=Path, metavar="ZIP", help="the zip the LMS downloaded, as it is")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="SUBMISSIONS_DIR")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a SUBMISSIONS_DIR that is not empty (files of the same name are replaced)",
    )

    p = add(
        "batch",
        cmd_batch,
        "Grade every *.ipynb in a folder; write RESULTS_DIR/<stem>.json, summary.json and gradebook.csv.",
    )
    p.add_argument("submissions", type=Path, metavar="SUBMISSIONS_DIR")
    p.add_argument("--assignment", "-a", required=True, help="assignment name or folder")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="RESULTS_DIR")
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="submissions graded at a time (default: the number of cores)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="regrade everything (default: keep results already made from the same submission and references)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on a Dask cluster (e.g. tcp://HOST:8786) instead of this machine; results are written here",
    )
    p.add_argument(
        "--keep-answers",
        action="store_true",
        help="also save each submission's captured arrays to RESULTS_DIR/answers/<stem>.npz (for `grader report`)",
    )
    server_option(p)
    execution_options(p)

    p = add(
        "check",
        cmd_check,
        "Check your notebook before you submit: the visible checks, graded as on submission, with readable feedback.",
    )
    p.add_argument("notebook", type=Path)
    p.add_argument("--assignment", "-a", help="assignment name or folder (default: from the notebook's metadata)")
    p.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="where to write the HTML feedback page (default: NOTEBOOK's folder, <stem>.feedback.html)",
    )
    p.add_argument("--no-html", action="store_true", help="do not write the HTML feedback page")
    server_option(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the result (the visible checks) as JSON")
    execution_options(p)

    p = add(
        "serve",
        cmd_serve,
        "Run the grading service: an HTTP API and a page where students upload notebooks and read their feedback.",
    )
    p.add_argument("--host", help="address to listen on (default: GRADER_SERVE__HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: GRADER_SERVE__PORT, else 8000; 0: any free port)")
    p.add_argument(
        "--data", type=Path, metavar="DIR", help="submissions, results and the queue (default: GRADER_SERVE__DATA_DIR)"
    )
    p.add_argument(
        "--workers", type=int, metavar="N", help="submissions graded at a time (default: the number of cores)"
    )
    p.add_argument(
        "--assignment", "-a", action="append", metavar="NAME", help="an assignment to serve (repeatable; default: all)"
    )
    execution_options(p)

    p = add(
        "report", cmd_report, "Write HTML feedback: a page per submission (verdicts, hints, pictures) and a class page."
    )
    p.add_argument("results", type=Path, metavar="RESULTS_DIR")
    p.add_argument("--assignment", "-a", required=True, help="assignment name or folder")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="REPORT_DIR")

    p = add(
        "gradescope",
        cmd_gradescope,
        "Build a Gradescope autograder bundle (setup.sh, run_autograder, grader, prebuilt references).",
    )
    p.add_argument("assignment", help="assignment name or folder")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="ZIP")
    p.add_argument(
        "--hide",
        action="append",
        default=[],
        metavar="CHECK_NAME",
        help="a check whose result students do not see, whatever the spec says (repeatable)",
    )
    p.add_argument(
        "--known-good",
        type=Path,
        metavar="NOTEBOOK",
        help="the notebook setup.sh must grade full marks before the image is used (default: the solution)",
    )
    p.add_argument(
        "--visibility",
        default="visible",
        choices=("visible", "hidden", "after_due_date", "after_published"),
        help="Gradescope visibility of the results (default: visible)",
    )

    p = add(
        "export",
        cmd_export,
        "Export a results folder for a learning platform: LTI AGS scores (JSON), or a Canvas or Moodle gradebook CSV.",
    )
    p.add_argument("format", choices=("lti", "canvas", "moodle"))
    p.add_argument("results", type=Path, metavar="RESULTS_DIR")
    p.add_argument(
        "--roster",
        type=Path,
        required=True,
        metavar="ROSTER_CSV",
        help="maps submission files to students (see README)",
    )
    p.add_argument("--out", "-o", type=Path, required=True, metavar="FILE")
    p.add_argument("--title", help="gradebook column title (default: the assignment's title)")
    p.add_argument("--assignment-id", help="Canvas: the existing assignment's id (else Canvas creates a new column)")
    p.add_argument("--points", type=float, help="rescale scores to this many points (default: the assignment's)")
    p.add_argument(
        "--missing-as-zero",
        action="store_true",
        help="CSV: give 0 to roster students without a result (default: leave them out; an empty cell would clear "
        "the LMS's grade)",
    )
    p.add_argument(
        "--map-by",
        default="User ID",
        choices=("Email address", "Username", "ID number", "User ID"),
        help="Moodle: the column you will choose under 'Identify user by' (every exported student must have it)",
    )

    p = add("publish", cmd_publish, "POST LTI 1.3 AGS scores for a results folder to a line item's /scores endpoint.")
    p.add_argument("format", choices=("lti",))
    p.add_argument("results", type=Path, metavar="RESULTS_DIR")
    p.add_argument("--roster", type=Path, required=True, metavar="ROSTER_CSV")
    p.add_argument(
        "--lineitem",
        metavar="URL",
        help="the AGS line item URL (scores go to URL/scores); default with --tool: the assignment's line item in "
        "the tool's `lineitems`, created if there is none",
    )
    p.add_argument(
        "--tool", type=Path, metavar="TOOL_TOML", help="the grader's LTI 1.3 registration: tokens are obtained with it"
    )
    p.add_argument(
        "--token",
        help="an OAuth2 bearer token the platform handed out, instead of --tool (default: $GRADER_LTI_TOKEN; "
        "avoid putting it on the command line)",
    )

    lti = add("lti", cmd_lti, "The grader as an LTI 1.3 tool: its key, and the class roster from the platform.")
    commands = lti.add_subparsers(dest="lti_command", required=True, metavar="LTI_COMMAND")
    p = commands.add_parser(
        "keygen", help="write a new RSA key and print its public JWKS (JSON) to register with the platform"
    )
    p.add_argument("--out", "-o", type=Path, required=True, metavar="KEY_PEM")
    p.add_argument("--force", action="store_true", help="replace an existing key (the platform must get the new one)")
    p = commands.add_parser("jwks", help="print the public JWKS (JSON) of an existing key")
    p.add_argument("key", type=Path, metavar="KEY_PEM")
    p.add_argument("--pem", action="store_true", help="print the public key as PEM instead (Moodle's 'RSA key')")
    p = commands.add_parser("roster", help="fetch the class (Names and Role Provisioning Services) into a roster CSV")
    p.add_argument("--tool", type=Path, required=True, metavar="TOOL_TOML")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="ROSTER_CSV")
    p.add_argument(
        "--join",
        type=Path,
        metavar="IMPORTED_ROSTER_CSV",
        help="the roster `grader import` wrote: keeps its submissions and times, with the platform's user ids",
    )
    p.add_argument("--memberships", metavar="URL", help="the NRPS memberships URL (default: the tool's)")

    p = add(
        "release",
        cmd_release,
        "Build the student kit: template, data, the visible checks and their expected answers; never the solution.",
    )
    p.add_argument("assignment", help="assignment name or folder")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="KIT_DIR")
    p.add_argument(
        "--zip", type=Path, metavar="KIT_ZIP", help="also write the kit as a zip (for a course page or Colab)"
    )
    p.add_argument("--force", action="store_true", help="replace what KIT_DIR holds")

    p = add(
        "validate",
        cmd_validate,
        "Check an assignment: the solution scores full marks and the untouched template scores 0.",
    )
    p.add_argument("assignment", help="assignment name or folder")

    add("schema", cmd_schema, "Print the JSON Schema of a result.")
    add("doctor", cmd_doctor, "Print this machine's isolation level for students' code and what is missing.")
    return parser


@contextmanager
def _executor(args: argparse.Namespace, *hide: Path) -> Iterator[Executor]:
    """The chosen executor with its sandbox policy, closed (its warm parent
    stopped) when done.  ``hide``: folders students must not see, besides the
    project's own (results, other submissions)."""
    from grader.execution.factory import make_executor
    from grader.execution.sandbox import FULL, Policy, hidden_paths, probe
    from grader.settings import cache_root

    if args.require_isolation and (args.no_isolation or probe().level != FULL):
        missing = "; ".join(probe().missing) or "isolation disabled by --no-isolation"
        raise GraderError(f"full isolation is required but not available: {missing} (see `grader doctor`)")
    policy = Policy(isolate=not args.no_isolation, hide=hidden_paths(cache_root(), *hide))
    with make_executor(args.executor, policy) as executor:
        yield executor


def _assignment_for(notebook: Path, name: str | None) -> Assignment:
    from grader.errors import InvalidSubmission
    from grader.execution.plan import read_submission
    from grader.model.assignment import available_assignments, load_assignment

    if name:
        return load_assignment(name)
    try:
        hint = read_submission(notebook, 50 * 2**20).assignment_hint
    except InvalidSubmission:
        hint = None
    if hint:
        return load_assignment(hint)
    known = available_assignments()
    if len(known) == 1:
        return load_assignment(known[0])
    raise GraderError(
        f"{notebook.name}: cannot tell which assignment this is; pass --assignment (known: {', '.join(known) or 'none'})"
    )


def _grade(
    args: argparse.Namespace,
    assignment: Assignment | None = None,
    keep_answers: Path | None = None,
    *,
    students: bool = False,
) -> Result:
    """Grade ``args.notebook``; ``students``: with the checks students may run
    themselves only (the references still come from the whole assignment, so
    the cache holds one entry for both)."""
    from grader.grading.grade import grade
    from grader.grading.references import load_references, reference_key
    from grader.model.environment import require

    assignment = assignment or _assignment_for(args.notebook, args.assignment)
    if args.command == "grade":  # an instructor's grade; a student's check runs (and says what it lacks) anyway
        require(assignment.name, assignment.requirements, assignment.requirements_file)
    with _executor(args, args.notebook.resolve().parent) as executor:
        executor.start()  # the warm executor's imports overlap with loading the references
        key = reference_key(assignment)
        references = load_references(assignment, key=key)
        return grade(
            args.notebook,
            assignment.for_students() if students else assignment,
            executor=executor,
            references=references,
            references_key=key,
            keep_answers=keep_answers,
            cell_timeout=args.cell_timeout,
            notebook_timeout=args.notebook_timeout,
        )


def cmd_grade(args: argparse.Namespace) -> int:
    print(_grade(args).model_dump_json(indent=2))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from rich.console import Console

    from grader.reports.console import print_check

    if args.server:
        return _check_on_server(args)
    assignment = _assignment_for(args.notebook, args.assignment)
    withheld = assignment.spec.for_students().withheld
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="grader-check-") as tmp:
        answers_file = Path(tmp) / "answers.npz"
        with console.status("Running your notebook..."):
            result = _grade(args, assignment, keep_answers=answers_file, students=True)
        print_check(result, Console())
        if args.json:
            args.json.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
        if withheld:
            print(
                f"\n{withheld.points:g} more points ({withheld.checks} checks) are not checked here: "
                "they run when your submission is graded."
            )
        if not args.no_html:
            html = args.html or args.notebook.with_name(args.notebook.stem + ".feedback.html")
            try:
                _write_feedback_page(result, assignment, answers_file, html)
                print(f"\nFeedback with pictures: {html}")
            except OSError as exc:
                print(f"\n(no HTML feedback: cannot write {html}: {exc.strerror or exc})", file=sys.stderr)
    return 0 if result.score == result.max_score else 1


def _server_token() -> str | None:
    from grader.settings import load_settings

    token = load_settings().server_token
    return token.get_secret_value() if token else None


def _check_on_server(args: argparse.Namespace) -> int:
    from rich.console import Console

    from grader.reports.console import print_check
    from grader.service.client import check_on_server

    with Console(stderr=True).status(f"Grading your notebook on {args.server}..."):
        result, page = check_on_server(args.server, args.notebook, args.assignment, _server_token())
    print_check(result, Console())
    if args.json:
        args.json.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if not args.no_html:
        html = args.html or args.notebook.with_name(args.notebook.stem + ".feedback.html")
        try:
            html.write_bytes(page)
            print(f"\nFeedback with pictures: {html}")
        except OSError as exc:
            print(f"\n(no HTML feedback: cannot write {html}: {exc.strerror or exc})", file=sys.stderr)
    return 0 if result.score == result.max_score else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from grader.service.server import prepare
    from grader.settings import ServeSettings, load_settings

    given = {"host": args.host, "port": args.port, "data_dir": args.data, "workers": args.workers}
    if args.assignment:
        given["assignments"] = tuple(args.assignment)
    settings = ServeSettings.model_validate(
        {**dict(load_settings().serve), **{k: v for k, v in given.items() if v is not None}}
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _executor(args, settings.data_dir.resolve()) as executor:
        service = prepare(settings, executor, cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout)
        print(
            f"grader serve: listening on {service.url} (assignments: {', '.join(service.served)}; "
            f"{settings.workers} workers; data in {settings.data_dir}); students upload at {service.url}",
            flush=True,
        )
        service.run()
    return 0


def _write_feedback_page(result: Result, assignment: Assignment, answers_file: Path, html: Path) -> None:
    from grader.grading.references import load_references
    from grader.reports.html import load_answer_arrays, write_submission_report

    answers, _ = load_answer_arrays(
        answers_file, int(assignment.spec.limits.max_answer_mb * 2**20), assignment.spec.answers
    )
    write_submission_report(result, answers, load_references(assignment), html, assignment=assignment.for_students())


def cmd_import(args: argparse.Namespace) -> int:
    from grader.platforms.lms_import import import_submissions

    report = import_submissions(args.platform, args.zip, args.out, force=args.force)
    _warn(report.notes())
    print(report.summary())
    print(
        f"Next: grader batch {args.out} --assignment NAME --out RESULTS_DIR; then export with --roster {report.roster}"
    )
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from grader.grading.batch import find_submissions, grade_batch
    from grader.grading.results_dir import GRADEBOOK_FILE, SUMMARY_FILE
    from grader.model.assignment import load_assignment
    from grader.reports.console import batch_progress, batch_table, batch_totals

    assignment = load_assignment(args.assignment)
    total = len(find_submissions(args.submissions))
    with batch_progress(Console(stderr=True), total) as on_result:
        if args.server:
            from grader.service.client import batch_on_server

            summary = batch_on_server(
                args.server,
                args.submissions,
                assignment,
                args.out,
                jobs=args.jobs,
                force=args.force,
                keep_answers=args.keep_answers,
                token=_server_token(),
                on_result=on_result,
            )
        else:
            with _executor(args, args.submissions.resolve(), args.out.resolve()) as executor:
                summary = grade_batch(
                    args.submissions,
                    assignment,
                    args.out,
                    executor=executor,
                    jobs=args.jobs,
                    force=args.force,
                    keep_answers=args.keep_answers,
                    cell_timeout=args.cell_timeout,
                    notebook_timeout=args.notebook_timeout,
                    scheduler=args.scheduler,
                    on_result=on_result,
                )
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # logs and pipes: no terminal width to fit
    console.print(batch_table(summary.results, assignment.spec.max_score, summary.seconds))
    print(batch_totals(summary, assignment.spec.max_score))
    print(f"Results: {args.out}/<submission>.json, {args.out / SUMMARY_FILE}, {args.out / GRADEBOOK_FILE}")
    if summary.missing:
        print(f"grader: error: no readable result for {', '.join(summary.missing)}", file=sys.stderr)
        return 3
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from grader.model.assignment import load_assignment
    from grader.reports.html import write_report

    index = write_report(args.results, args.out, load_assignment(args.assignment))
    print(f"Class page: {index}")
    return 0


def cmd_gradescope(args: argparse.Namespace) -> int:
    from grader.model.assignment import load_assignment
    from grader.platforms.gradescope import build_bundle

    path = build_bundle(
        load_assignment(args.assignment),
        args.out,
        visibility=args.visibility,
        test_visibility={name: "hidden" for name in args.hide},
        known_good=args.known_good,
    )
    print(f"Gradescope autograder bundle: {path} (upload it as the assignment's autograder; see README.txt inside)")
    return 0


def _warn(lines: Iterable[str]) -> None:
    for line in lines:
        print(f"grader: warning: {line}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "lti":
        from grader.platforms.lti.scores import export_lti

        lti_export = export_lti(args.results, args.roster, args.out)
        _warn(lti_export.matching.notes())
        print(f"{len(lti_export.scores)} LTI scores written to {args.out}")
        return 0
    from grader.platforms.gradebook import export_canvas, export_moodle

    if args.format == "canvas":
        exported = export_canvas(
            args.results,
            args.roster,
            args.out,
            assignment_id=args.assignment_id,
            title=args.title,
            points_possible=args.points,
            missing_as_zero=args.missing_as_zero,
        )
    else:
        exported = export_moodle(
            args.results,
            args.roster,
            args.out,
            title=args.title,
            points_possible=args.points,
            missing_as_zero=args.missing_as_zero,
            map_by=args.map_by,
        )
    _warn(exported.notes())
    print(f"{args.format.capitalize()} gradebook written to {args.out}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from grader.platforms.lti.scores import publish_lti
    from grader.platforms.lti.tool import TokenClient, load_tool_config
    from grader.settings import load_settings

    tool = TokenClient(load_tool_config(args.tool)) if args.tool else None
    token = None
    if tool is None:
        configured = load_settings().lti_token
        token = args.token or (configured.get_secret_value() if configured else None)
        if not token:
            raise GraderError("no token: pass --tool TOOL_TOML, --token, or set GRADER_LTI_TOKEN")
    elif args.token:
        raise GraderError("give --tool or --token, not both")
    if args.lineitem is None and tool is None:
        raise GraderError("no line item: pass --lineitem URL, or --tool with a registration that has `lineitems`")
    report = publish_lti(args.results, args.roster, args.lineitem, token, tool=tool)
    _warn(report.notes())
    accepted = sum(p.outcome == "accepted" for p in report.posted)
    print(f"{accepted} of {len(report.posted)} scores accepted by {report.lineitem}")
    return 0 if report.ok else 1


def cmd_lti(args: argparse.Namespace) -> int:
    from grader.platforms.lti import keys

    if args.lti_command == "keygen":
        print(json.dumps(keys.generate_key(args.out, force=args.force), indent=2))
        print(f"key written to {args.out}; register the JWKS above with the platform", file=sys.stderr)
        return 0
    if args.lti_command == "jwks":
        public = keys.load_private_key(args.key).public_key()
        print(
            keys.public_pem(public) if args.pem else json.dumps(keys.jwks(public), indent=2), end="\n" * (not args.pem)
        )
        return 0
    from grader.platforms.lti.memberships import fetch_members, roster_from_members
    from grader.platforms.lti.services import ServiceClient
    from grader.platforms.lti.tool import TokenClient, load_tool_config
    from grader.platforms.roster import load_roster, write_roster

    tool = TokenClient(load_tool_config(args.tool))
    url = args.memberships or tool.config.memberships
    if not url:
        raise GraderError(f"{args.tool}: no `memberships` URL; add it, or pass --memberships URL")
    join = load_roster(args.join) if args.join else None
    members = fetch_members(ServiceClient(tool.token), url)
    made = roster_from_members(members, join)
    _warn(made.notes)
    write_roster(args.out, made.students)
    print(f"{len(made.students)} students written to {args.out}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from grader.kit.release import kit_info, release

    kit = release(args.assignment, args.out, force=args.force, zip_path=args.zip)
    info = kit_info(kit)
    assert info is not None
    withheld = (
        f"; {info.withheld_checks} checks ({info.withheld_points:g} points) left out" if info.withheld_checks else ""
    )
    print(
        f"student kit written to {kit}: {info.checks} visible checks{withheld}"
        + (f"; zip: {args.zip}" if args.zip else "")
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from grader.execution.kernel import KernelExecutor
    from grader.grading.grade import grade
    from grader.grading.references import load_references
    from grader.model.assignment import load_assignment
    from grader.model.environment import unmet

    assignment = load_assignment(args.assignment)
    missing = unmet(list(assignment.requirements))
    for problem in missing:
        print(f"environment FAIL: {problem}")
    if assignment.requirements and not missing:
        print(f"environment ok: {', '.join(assignment.requirements)}")
    references = load_references(assignment)
    executor = KernelExecutor()
    solution = grade(assignment.solution_path, assignment, executor=executor, references=references)
    template = grade(assignment.template_path, assignment, executor=executor, references=references)
    ok_solution = solution.score == solution.max_score
    ok_template = template.score == 0 and template.status == "graded"
    print(
        f"solution {assignment.solution_path}: {solution.score:g}/{solution.max_score:g} {'ok' if ok_solution else 'FAIL: must score full marks'}"
    )
    for t in solution.tests:
        if t.status != "passed":
            print(f"  {t.name}: {t.output}")
    print(
        f"template {assignment.template_path}: {template.score:g}/{template.max_score:g} {'ok' if ok_template else 'FAIL: must score 0 and run'}"
    )
    for t in template.tests:
        if t.status == "passed":
            print(f"  passes without any work: {t.name}")
    return 0 if ok_solution and ok_template and not missing else 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from grader.execution.host import warm_unavailable
    from grader.execution.sandbox import FULL, ResourceLimits, probe
    from grader.model.assignment import available_assignments, load_assignment
    from grader.model.environment import unmet
    from grader.model.versions import current_versions, framework_problem

    caps = probe()
    print(f"isolation: {caps.level}")
    for name, ok in [
        ("root", caps.root),
        ("namespaces (mount, network, pid, ipc, uts)", caps.namespaces),
        ("cgroup v1 memory controller", caps.cgroup_memory),
        ("cgroup v1 pids controller", caps.cgroup_pids),
    ]:
        print(f"  {'ok     ' if ok else 'missing'} {name}")
    limits = ResourceLimits()
    print(
        f"limits per submission: {limits.memory_mb} MB memory, {limits.max_processes} processes/threads, "
        f"{limits.cpu_seconds} s CPU, {limits.file_size_mb} MB per file, {limits.scratch_mb} MB scratch, "
        f"{limits.open_files} open files"
    )
    if caps.level != FULL:
        print(
            "without full isolation a submission could read the solution or other results, or exhaust the machine; "
            "grade as root on Linux with cgroup v1, or pass --require-isolation to refuse"
        )
    warm = warm_unavailable()
    print(f"executors: kernel ok, warm {'ok' if warm is None else 'unavailable: ' + warm}")
    framework, found = framework_problem(), current_versions()
    print(f"missing: {framework}" if framework else f"tensorflow {found.tensorflow}, keras {found.keras}: ok")
    environment_ok = framework is None
    for name in available_assignments():
        try:
            assignment = load_assignment(name)
        except GraderError as exc:
            print(f"assignment {name}: cannot be loaded: {exc}")
            environment_ok = False
            continue
        problems = unmet(list(assignment.requirements))
        environment_ok = environment_ok and not problems
        allowed = ", ".join(assignment.requirements) or "nothing beyond the grader's own"
        print(f"assignment {name}: students may use {allowed}: {'missing' if problems else 'ok'}")
        for problem in problems:
            print(f"  missing {problem}")
    return 0 if caps.level == FULL and environment_ok else 1


def cmd_schema(args: argparse.Namespace) -> int:
    from grader.model.result import Result

    print(json.dumps(Result.model_json_schema(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
