from django.apps import AppConfig


class AcquisitionConfig(AppConfig):
    name = "backend.acquisition"
    label = "acquisition"
    verbose_name = "Active-learning acquisition"

    def ready(self) -> None:
        from backend.acquisition.held_out.selectors import test_scan_conflicts
        from backend.acquisition.steps.health import phases_check
        from backend.core.health import register_check
        from backend.projects.services import register_test_scan_check

        register_check("phases", phases_check)
        # A scan a model learnt from cannot measure it; projects cannot look that up itself.
        register_test_scan_check(test_scan_conflicts)
