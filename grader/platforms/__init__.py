"""Where grades travel: rosters, matching results to students, LTI, gradebook CSVs, Gradescope."""
