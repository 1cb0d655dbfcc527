"""The commands and their output: thin entry points that parse options, call one service of
the run, the import or operations, and write what its records hold (text or --json).

May import: anything of the app (an entry point, as tasks, signals and the admin are).
"""
