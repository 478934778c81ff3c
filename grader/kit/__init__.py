"""What students get: the kit that lets them check their work without the
solution (:mod:`.release`), and the checks they run inside their notebook
(:mod:`.live`)."""
