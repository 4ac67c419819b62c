from lwop_jax.cli.synthetic import main

raise SystemExit(main())
