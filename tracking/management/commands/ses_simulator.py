"""`manage.py ses_simulator --webhook-url URL`: post signed SNS events for what local SES accepted."""

from __future__ import annotations

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
        parser.add_argument("--state", default=str(home / "state.json"), help="Handled messages and pending events.")
        parser.add_argument("--identity-dir", default=str(home), help="Where the signing key and certificate live.")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--signature-version", choices=["1", "2"], default="2")
        parser.add_argument("--time-scale", type=float, default=0.05, help="Real seconds per simulated second.")
        parser.add_argument("--interval", type=float, default=1.0)
        parser.add_argument("--once", action="store_true", help="Post everything now and exit.")
        for name, default in vars(Rates()).items():
            parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=default)

    def handle(self, *args, **options) -> None:
        endpoint = options["ses_endpoint"] or settings.AWS_SES_REGION_ENDPOINT_URL
        if not endpoint:
            raise CommandError("No local SES endpoint: pass --ses-endpoint or set AWS_SES_ENDPOINT_URL.")
        state = Path(options["state"])
        identity = SigningIdentity(Path(options["identity_dir"]))
        server = CertificateServer(identity, port=options["cert_port"])
        simulator = Simulator(
            webhook_url=options["webhook_url"],
            ses_endpoint=endpoint,
            state_path=state,
            identity=identity,
            cert_url=server.cert_url,
            topic_arn=options["topic_arn"],
            rates=Rates(**{name: options[name] for name in vars(Rates())}),
            seed=options["seed"],
            time_scale=options["time_scale"],
            signature_version=options["signature_version"],
        )
        self.stdout.write(f"SES simulator: certificate at {server.cert_url}, topic {options['topic_arn']}")
        try:
            if options["once"]:
                self.stdout.write(f"Posted {simulator.run_once()} events.")
            else:
                simulator.loop(interval=options["interval"])
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
