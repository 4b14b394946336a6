from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Common helpers"

    def ready(self) -> None:
        from common import shutdown

        # A SIGTERM to a whole qcluster (systemd's stop) stops it in order: see common/shutdown.py.
        shutdown.install()
