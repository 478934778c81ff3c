"""The one exception family of the library.

A wrong answer, a crashed cell or a malformed submission is a *result*, not an
exception: :func:`grader.grading.grade` returns it.  These exceptions mean the grader
itself cannot go on (an operator mistake, a broken solution, a machine problem);
only the CLI turns them into exit codes and messages.
"""

from __future__ import annotations


class GraderError(Exception):
    """Base class of every error the grader raises on purpose."""

    exit_code = 3


class AssignmentNotFound(GraderError):
    """No assignment folder of that name (or at that path)."""


class SpecError(GraderError):
    """The assignment spec is missing, not TOML, or fails validation.

    The message names the file and the key, so a typo such as ``rtoll`` is
    found when the spec is loaded rather than halfway through a batch.
    """


class SolutionError(GraderError):
    """The reference solution does not run, or disagrees with the independent
    NumPy computation of the same answer: references cannot be trusted."""

    exit_code = 4


class InvalidSubmission(GraderError):
    """The submission file cannot be graded (not a notebook, truncated JSON,
    too large...).  :func:`grader.grading.grade` turns it into a result with score 0."""


class ExecutorError(GraderError):
    """The executor itself failed (for example a kernel that cannot start),
    independently of what the student's code does."""

    exit_code = 5


class ResultsError(GraderError):
    """Results cannot be written (folder not writable, not a folder...)."""


class RosterError(GraderError):
    """The roster cannot be read or fails validation (file, line and column named)."""


class LmsError(GraderError):
    """An export or a publication cannot go on: results of several assignments,
    a line item URL or token that cannot be used; or an LMS's download that
    ``grader import`` cannot use (not a zip, truncated, not that platform's)."""


class CourseEnvironmentError(GraderError):
    """This Python environment lacks packages the assignment lets students
    use: grading here would take points from students who use them."""

    exit_code = 6


class ServiceError(GraderError):
    """``grader serve`` cannot start as configured (anonymous submissions on
    an address other than loopback, the ``[serve]`` extra missing), or a
    client (``--server``) cannot use the service it names."""
