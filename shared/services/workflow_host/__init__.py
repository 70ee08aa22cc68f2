"""The workflow engine's home in pbc: its adapter over the workflow tables, its instance launcher
(the platform's own launch path) and the host that feeds it messages exactly once.

``ends`` needs no engine; the other modules import it (Python 3.12 or later) on first use.
"""
