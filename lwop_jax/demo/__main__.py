from lwop_jax.cli.demo import main

raise SystemExit(main())
