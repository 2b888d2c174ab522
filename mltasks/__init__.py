"""MyoLabel's ML core: a pure library on numpy, torch, SimpleITK and scikit-learn.

It never imports Django, Celery or Channels. Volumes are numpy arrays in (z, y, x)
order with spacing in mm in the same order; SimpleITK's physical space is LPS.
Long work reports progress through an ``on_progress`` callback (see ``progress``).
"""

__version__ = "0.1.0"
