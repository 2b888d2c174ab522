"""Sub-commands of ``python -m mltasks``: one module per command family.

Each module defines ``register(subparsers)``; keep heavy imports (torch,
SimpleITK) inside the command functions so that ``--help`` stays fast.
"""
