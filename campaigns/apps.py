from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns and audiences"

    def ready(self) -> None:
        from campaigns import shutdown

        # A SIGTERM to a whole qcluster (systemd's stop) stops it in order: see campaigns/shutdown.py.
        shutdown.install()
