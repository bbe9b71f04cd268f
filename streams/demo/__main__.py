"""`python -m streams.demo watch|summary|cleanup` (see streams/demo/cli.py)."""

from streams.demo.cli import main

raise SystemExit(main())
