"""The project's settings with post_office logging failures only (``LOG_LEVEL`` 1).

``make bench`` runs the post_office baseline twice: with the project's ``LOG_LEVEL`` 2 (a ``Log``
row for every message, the same records the engine writes) and with this lighter setting, so
that the ratio is shown both for equal work and for post_office's cheapest configuration.
"""

from cobalt_mail.settings import *  # noqa: F403

POST_OFFICE = {**POST_OFFICE, "LOG_LEVEL": 1}  # noqa: F405
