from edgebci.cli import main

raise SystemExit(main())
