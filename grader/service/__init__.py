"""``grader serve``: the grading service.

A submission is stored (file and SQLite row) before it is acknowledged
(:mod:`~grader.service.store`), graded by a pool around one warm executor kept
for the service's life (:mod:`~grader.service.pool`), and read back as the
CLI's result JSON or the HTML feedback page (:mod:`~grader.service.app`).
Who may submit: :mod:`~grader.service.access`; the students' page:
:mod:`~grader.service.page`; ``grader check/batch --server``:
:mod:`~grader.service.client` (standard library only, so a student's install
needs no web framework).
"""
