"""A token for scripts: POST username and password, then send ``Authorization: Token <key>``."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView


class TokenLoginThrottle(AnonRateThrottle):
    # Slows password guessing from one address; the count lives in the default cache.
    scope = "token-login"
    rate = "30/min"


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

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, (401, "application/json"): inline_serializer(
            "TokenError", {"detail": serializers.CharField()})},
        auth=[],
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None or not user.is_active:
            raise AuthenticationFailed("Wrong username or password.")
        token, _ = Token.objects.get_or_create(user=user)
        return Response(self.OutputSerializer({"token": token.key}).data)
