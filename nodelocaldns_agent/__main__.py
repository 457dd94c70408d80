from nodelocaldns_agent.cli import main

raise SystemExit(main())
