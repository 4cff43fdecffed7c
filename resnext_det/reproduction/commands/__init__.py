"""The command-line tools: each module's ``cli()`` is a ``tools/`` or ``datasets/`` script
and a console script of the installed package (``resnext-<name>``)."""
