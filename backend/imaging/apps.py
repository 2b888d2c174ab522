from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "backend.imaging"
    label = "imaging"
