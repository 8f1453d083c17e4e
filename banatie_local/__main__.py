"""``python -m banatie_local`` runs the command line."""

import multiprocessing

from banatie_local.cli import main

if __name__ == "__main__":
    # A frozen executable re-enters here in child processes; this must come first.
    multiprocessing.freeze_support()
    main()
