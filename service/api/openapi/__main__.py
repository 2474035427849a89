"""``python -m service.api.openapi [json|markdown]``."""

from service.api.openapi import main

raise SystemExit(main())
