"""The read-only status page at ``/ui`` (docs/ui.md): handlers and wiring (:mod:`.routes`),
sessions and sign-in (:mod:`.session`, :mod:`.login_limit`), rendering (:mod:`.render`,
``templates/``), static files (:mod:`.static`, ``static/``), errors (:mod:`.errors`)."""
