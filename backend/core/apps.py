from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "backend.core"
    label = "core"
    verbose_name = "MyoLabel core"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from backend.core.session_limits import stamp_on_login

        user_logged_in.connect(stamp_on_login, dispatch_uid="myolabel-session-limits")
