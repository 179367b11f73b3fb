from tinyota_mqtt.cli import main

raise SystemExit(main())
