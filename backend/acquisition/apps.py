from django.apps import AppConfig


class AcquisitionConfig(AppConfig):
    name = "backend.acquisition"
    label = "acquisition"
    verbose_name = "Active-learning acquisition"
