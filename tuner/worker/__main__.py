"""`python -m tuner.worker CONFIG.json RESULT.json`: one trial process (see tuner.worker.run)."""

from tuner.worker.run import exit_now, main

exit_now(main())
