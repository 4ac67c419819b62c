"""``python -m lwop_jax VERB ...``: the same as the ``lwop`` command."""

from lwop_jax.cli.main import main

raise SystemExit(main())
