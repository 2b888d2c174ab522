from django.apps import AppConfig


class AcquisitionConfig(AppConfig):
    name = "backend.acquisition"
    label = "acquisition"
    verbose_name = "Active-learning acquisition"

    def ready(self) -> None:
        from backend.acquisition.steps.health import phases_check
        from backend.core.health import register_check

        register_check("phases", phases_check)
