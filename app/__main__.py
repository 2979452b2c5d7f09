"""``python -m app serve | ask | eval``."""

from app.cli import main

raise SystemExit(main())
