from django.core.management.base import BaseCommand

from backend.core.seeding import seed_all


class Command(BaseCommand):
    help = "Create the demo administrator and demo data (idempotent); print the login."

    def handle(self, *args, **options):
        login = seed_all(on_line=self.stdout.write)
        self.stdout.write(f"login: {login.username} / {login.password}")
