"""The data every step shares: the assignment and its spec, the result, library versions."""
