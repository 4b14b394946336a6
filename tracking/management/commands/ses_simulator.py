"""`manage.py ses_simulator --webhook-url URL`: post signed SNS events for what local SES accepted."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tracking.simulator import (
    DEFAULT_CERT_PORT,
    DEFAULT_TOPIC_ARN,
    CertificateServer,
    Rates,
    SigningIdentity,
    Simulator,
)


class Command(BaseCommand):
    help = "Simulate SES event publishing for the local SES server (development only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--webhook-url", required=True)
        parser.add_argument("--ses-endpoint", default=None, help="Local SES URL (default: AWS_SES_ENDPOINT_URL).")
        parser.add_argument("--cert-port", type=int, default=getattr(settings, "SNS_SIMULATOR_PORT", DEFAULT_CERT_PORT))
        parser.add_argument("--topic-arn", default=getattr(settings, "SNS_SIMULATOR_TOPIC_ARN", DEFAULT_TOPIC_ARN))
        home = Path(settings.BASE_DIR) / "var" / "ses_simulator"
        parser.add_argument("--identity-dir", default=str(home), help="Where the signing key and certificate live.")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--signature-version", choices=["1", "2"], default="2")
        parser.add_argument("--time-scale", type=float, default=0.05, help="Real seconds per simulated second.")
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--connections", type=int, default=32, help="Notifications posted at once.")
        parser.add_argument("--report-every", type=float, default=10.0, help="Seconds between progress lines.")
        parser.add_argument("--once", action="store_true", help="Post everything now and exit.")
        for name, default in vars(Rates()).items():
            parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=default)

    def handle(self, *args, **options) -> None:
        endpoint = options["ses_endpoint"] or settings.AWS_SES_REGION_ENDPOINT_URL
        if not endpoint:
            raise CommandError("No local SES endpoint: pass --ses-endpoint or set AWS_SES_ENDPOINT_URL.")
        identity = SigningIdentity(Path(options["identity_dir"]))
        server = CertificateServer(identity, port=options["cert_port"])
        simulator = Simulator(
            webhook_url=options["webhook_url"],
            ses_endpoint=endpoint,
            identity=identity,
            cert_url=server.cert_url,
            topic_arn=options["topic_arn"],
            rates=Rates(**{name: options[name] for name in vars(Rates())}),
            seed=options["seed"],
            time_scale=options["time_scale"],
            signature_version=options["signature_version"],
            connections=options["connections"],
            region=settings.AWS_SES_REGION_NAME,
            report=self.stdout.write,
            report_every=options["report_every"],
        )
        if options["verbosity"] >= 2:
            self.stdout.write(f"SES simulator: certificate at {server.cert_url}, topic {options['topic_arn']}")
        try:
            if options["once"]:
                started = time.monotonic()
                posted = simulator.run_once()
                self.stdout.write(f"Posted {posted} events in {time.monotonic() - started:.2f} s.")
            else:
                self._loop(simulator, interval=options["interval"])
        except KeyboardInterrupt:
            pass
        finally:
            simulator.close()
            server.stop()

    def _loop(self, simulator: Simulator, *, interval: float) -> None:
        stop = threading.Event()
        # SIGTERM (make run stopping) ends the loop between two rounds of posts, like Ctrl-C.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        try:
            simulator.loop(interval=interval, stop=stop)
        finally:
            signal.signal(signal.SIGTERM, previous)
