"""A token for scripts: POST username and password, then send ``Authorization: Token <key>``.

Failed attempts count in django-axes, as on the login pages: after ``AXES_FAILURE_LIMIT``
failures for one user name from one address, that pair is locked for the cool-off, even with
the right password. The throttle slows guessing across user names from one address; both
find the address with ``backend.core.client_ip`` (``X-Forwarded-For`` only from trusted proxies).
"""

from __future__ import annotations

from django.contrib.auth import authenticate, user_logged_in
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import APIException, AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from backend.core.client_ip import client_ip
from backend.core.login_limits import lockout_message


class TokenLoginThrottle(AnonRateThrottle):
    # The count lives in the default cache: Redis in production, so every web process shares it.
    scope = "token-login"
    rate = "30/min"

    def get_ident(self, request) -> str:
        return client_ip(request) or "unknown"


class LoginLocked(APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "login_locked"


_Error = inline_serializer("TokenError", {"detail": serializers.CharField()})


class TokenObtainApi(APIView):
    """Your API token (created on first request; the same key afterwards)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes = [TokenLoginThrottle]

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, style={"input_type": "password"}, trim_whitespace=False)

        class Meta:
            ref_name = "TokenObtain"

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

        class Meta:
            ref_name = "AuthToken"

    def get_authenticate_header(self, request) -> str:
        # A 401 must name a scheme; without one DRF turns AuthenticationFailed into 403.
        return 'Token realm="api"'

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, (401, "application/json"): _Error, (429, "application/json"): _Error},
        auth=[],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The DRF request itself: axes reads its address and marks it when the pair is locked.
        user = authenticate(request, **data.validated_data)
        if getattr(request, "axes_locked_out", False):
            raise LoginLocked(lockout_message())
        if user is None or not user.is_active:
            raise AuthenticationFailed("Wrong username or password.")
        # A login like the pages' (axes logs it and clears this pair's failures; last_login).
        user_logged_in.send(sender=user.__class__, request=request, user=user)
        token, _ = Token.objects.get_or_create(user=user)
        return Response(self.OutputSerializer({"token": token.key}).data)
