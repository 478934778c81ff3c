"""Gradescope: build the autograder zip, and grade one submission inside it.

What Gradescope documents, and this module relies on
(https://gradescope-autograders.readthedocs.io/en/latest/specs/,
.../submission_metadata/, .../troubleshooting/):

* The autograder is a zip with ``setup.sh`` and ``run_autograder`` at its top
  level (the files, not a folder holding them).  Gradescope unpacks it into
  ``/autograder/source``, runs ``setup.sh`` once while building the image
  (Ubuntu, so apt is available) and copies ``run_autograder`` to
  ``/autograder/run_autograder``, an executable script with a ``#!`` line.
* For each submission the student's files are in ``/autograder/submission/``
  and ``/autograder/submission_metadata.json`` holds the submission ``id``,
  ``created_at``, ``assignment`` and ``users[]`` (``name``, ``email``, ``id``).
  ``run_autograder`` runs with ``/autograder`` as working directory and must
  produce ``/autograder/results/results.json``; what it prints is kept in
  ``results/stdout``, shown to instructors only by default.
* ``results.json``: ``score`` (overrides the sum of the tests),
  ``execution_time`` (seconds), ``output``, ``visibility``,
  ``stdout_visibility``, ``extra_data`` ("extra data to be stored") and
  ``tests[]`` with ``name``, ``score``, ``max_score``, ``status``
  (``passed``/``failed``), ``output``, ``visibility``.  Visibility is
  ``visible`` (default), ``hidden``, ``after_due_date`` or ``after_published``;
  a test's own setting overrides the top level's, and when tests are hidden
  students do not see their total score.
* A container gets 768 MB of memory and half a CPU unless the assignment's
  Autograder Settings say more ("Killed" means the memory ran out), and 10
  minutes per submission (40 at most).

So results.json has only those documented keys at its top level and in its
tests; the grader's complete :class:`~grader.model.result.Result` and the student's
identity go in ``extra_data``.  Whatever goes wrong, a results.json is written
(score 0 and the reason): a Python failure becomes an error result here, and
``run_autograder`` writes one itself if Python did not.

The bundle ships the spec, the template and the data, never the solution: the
reference answers are built here once and stored in the references cache
format (``references/<name>/<key[:32]>/``), with the cache key and the sha256
of the spec and data files recorded in ``gradescope.json``.
"""

from grader.platforms.gradescope.autograder import (
    DEFAULT_ROOT,
    Bundle,
    check_bundle,
    find_notebook,
    load_bundle,
    read_submission_metadata,
    run_autograder,
    to_gradescope,
)
from grader.platforms.gradescope.bundle import (
    CONFIG_FILE,
    BundleConfig,
    BundleError,
    build_bundle,
    pinned_requirements,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_ROOT",
    "Bundle",
    "BundleConfig",
    "BundleError",
    "build_bundle",
    "check_bundle",
    "find_notebook",
    "load_bundle",
    "pinned_requirements",
    "read_submission_metadata",
    "run_autograder",
    "to_gradescope",
]
