"""`python -m histetl.cli`."""

from histetl.cli import main

main()
