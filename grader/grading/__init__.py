"""Grading submissions: one (grade), a folder (batch), on a cluster (distributed), the reference
answers, and the results folder's layout and writes."""
