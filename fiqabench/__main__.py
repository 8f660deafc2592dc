from fiqabench.cli import main

raise SystemExit(main())
