import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cobalt_mail.settings")
application = get_wsgi_application()

# The SNS webhook skips the middleware stack and shares transactions between concurrent requests
# (tracking/wsgi.py, tracking/groupcommit.py); every other URL goes through Django as usual.
from tracking.wsgi import with_fast_webhook  # noqa: E402

application = with_fast_webhook(application)
