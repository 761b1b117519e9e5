from fluidrec.cli import main

raise SystemExit(main())
