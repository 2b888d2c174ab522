"""Projects, memberships and label sets.

Roles (``backend.projects.access``): an annotator reads; a lead also changes the
project's configuration; an admin may do everything in the project, members and
pools included; site superusers may do everything. Any signed-in user may create a
project and becomes its admin, and may create a label set (label sets are shared).

Pools: a project may be given (``pools``) only pools its caller can see, and a pool not
yet in the project only if the caller is admin of every project already using it (or a
superuser): attaching never gives rights the caller did not have. A pool no project uses
is attached by a superuser only (no project member can see it, its creator included: the
creator may have been removed from the projects that used it). Deleting a pool needs the
same rights.

Members: only project admins (and superusers) add, re-role and remove members; they add
existing accounts, with any role; only superusers create accounts (admin site). Leads,
annotators and outsiders are refused before the user name is looked at, so they learn
nothing about accounts. Adding answers whether a user name exists, and anyone can make a
project and be its admin, so an admin gets ``UNKNOWN_USERNAMES_PER_HOUR`` "no such user"
answers per hour; after that every add (existing name or not) answers 429 until the hour
ends, so accounts cannot be enumerated cheaply. Names of projects and pools are unique
site-wide: a taken name is refused without saying what holds it.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from backend.core.errors import ERRORS, READ_ERRORS, ErrorOutput
from backend.core.fields import FiniteFloatField
from backend.core.ids import id_of
from backend.imaging.models import Pool, Scan
from backend.projects import selectors, services
from backend.projects.access import (
    Role,
    pools_visible_to,
    project_for,
    scans_visible_to,
    username_lookups_exhausted,
)
from backend.projects.models import Label, LabelSet, Membership, Project


class ProjectOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    label_set = serializers.IntegerField(source="label_set_id")
    network_profile = serializers.CharField()
    network_config = serializers.DictField()
    strategy = serializers.ChoiceField(choices=Project.Strategy.choices)
    tau = serializers.FloatField()
    slices_per_step = serializers.IntegerField()
    k_uncertain = serializers.IntegerField()
    mc_samples = serializers.IntegerField()
    stop_target_dice = serializers.FloatField(allow_null=True)
    pools = serializers.SerializerMethodField()
    test_scans = serializers.SerializerMethodField()
    my_role = serializers.CharField(help_text="Your role in the project: admin, lead or annotator.")
    created = serializers.DateTimeField()
    notices = serializers.ListField(
        child=serializers.CharField(), default=list,
        help_text="What this change did that you should know now (e.g. a new test scan left the pool); "
                  "empty on reads.")

    def get_pools(self, project) -> list[int]:
        return sorted(pool.pk for pool in project.pools.all())

    def get_test_scans(self, project) -> list[int]:
        return sorted(scan.pk for scan in project.test_scans.all())


def _project_output(user, project: Project) -> dict:
    project.my_role = selectors.role_of(user, project, selectors.roles_by_project(user))
    return ProjectOutput(project).data


class ProjectConfigInput(serializers.Serializer):
    """Configuration a lead may change; every field is optional in a PATCH."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True, required=False)
    network_profile = serializers.CharField(max_length=30, required=False,
                                            help_text="Network profile of mltasks.nets: paper, fast or tiny.")
    network_config = serializers.DictField(required=False,
                                           help_text="Overrides of the profile: width, depth, dropout, matrix.")
    strategy = serializers.ChoiceField(choices=Project.Strategy.choices, required=False)
    tau = FiniteFloatField(min_value=0.0, max_value=1.0, required=False,
                           help_text="Pixel uncertainty at and above which a pixel is queried.")
    slices_per_step = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
    k_uncertain = serializers.IntegerField(min_value=1, max_value=100_000, required=False,
                                           help_text="K: candidate slices (most uncertain) per step.")
    mc_samples = serializers.IntegerField(min_value=2, max_value=100, required=False,
                                          help_text="T: Monte-Carlo dropout samples.")
    stop_target_dice = FiniteFloatField(min_value=0.0, max_value=1.0, allow_null=True, required=False)
    pools = id_of(Pool.objects.none(), many=True, required=False)
    test_scans = id_of(Scan.objects.none(), many=True, required=False)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Only what the user may see can be referred to: anything else "does not exist".
        if user is not None:
            self.fields["pools"].child_relation.queryset = pools_visible_to(user)
            self.fields["test_scans"].child_relation.queryset = scans_visible_to(user)


class ProjectListApi(APIView):
    class InputSerializer(ProjectConfigInput):
        label_set = id_of(
            LabelSet.objects.all(), required=False,
            help_text="Fixed once the project exists; the oldest label set (the default) when omitted.")

        class Meta:
            ref_name = "ProjectCreate"

    @extend_schema(operation_id="projects_list", responses={200: ProjectOutput(many=True)})
    def get(self, request):
        """Projects you are a member of (all projects for superusers)."""
        roles = selectors.roles_by_project(request.user)
        projects = list(selectors.projects_for_listing(request.user))
        for project in projects:
            project.my_role = selectors.role_of(request.user, project, roles)
        return Response(ProjectOutput(projects, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ProjectOutput, 400: ErrorOutput})
    def post(self, request):
        """Create a project: any signed-in user may, and becomes its admin."""
        data = self.InputSerializer(data=request.data, user=request.user)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        label_set = fields.pop("label_set", None) or LabelSet.objects.order_by("created", "id").first()
        if label_set is None:
            raise DrfValidationError({"label_set": ["No label set exists yet; create one first."]})
        project = services.project_create(user=request.user, label_set=label_set, **fields)
        return Response(_project_output(request.user, project), status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    class InputSerializer(ProjectConfigInput):
        class Meta:
            ref_name = "ProjectUpdate"

    @extend_schema(responses={200: ProjectOutput, **READ_ERRORS})
    def get(self, request, project_id: int):
        return Response(_project_output(request.user, project_for(request.user, project_id)))

    @extend_schema(request=InputSerializer, responses={200: ProjectOutput, **ERRORS})
    def patch(self, request, project_id: int):
        """Change the configuration (lead or admin)."""
        project = project_for(request.user, project_id, min_role=Role.LEAD)
        data = self.InputSerializer(data=request.data, user=request.user, partial=True)
        data.is_valid(raise_exception=True)
        project = services.project_update(project=project, user=request.user, **data.validated_data)
        return Response(_project_output(request.user, project))

    @extend_schema(responses={204: None, **READ_ERRORS})
    def delete(self, request, project_id: int):
        """Delete the project (admin); its pools and scans stay."""
        services.project_delete(project=project_for(request.user, project_id, min_role=Role.ADMIN))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberOutput(serializers.Serializer):
    user = serializers.IntegerField(source="user_id")
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    created = serializers.DateTimeField()


class ProjectMemberListApi(APIView):
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Membership.Role.choices)

        class Meta:
            ref_name = "MemberAdd"

    @extend_schema(responses={200: MemberOutput(many=True), **READ_ERRORS})
    def get(self, request, project_id: int):
        project = project_for(request.user, project_id)
        return Response(MemberOutput(selectors.project_members(project), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: MemberOutput, 429: ErrorOutput, **ERRORS})
    def post(self, request, project_id: int):
        """Add an existing user with a role (admin); too many unknown user names answer 429 for an hour."""
        project = project_for(request.user, project_id, min_role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if username_lookups_exhausted(request.user):
            raise Throttled(detail="Too many user names that do not exist were tried from your account; adding "
                                   "members is paused for up to an hour. Ask a site administrator for the exact "
                                   "user names.")
        membership = services.membership_add(project=project, by=request.user, **data.validated_data)
        return Response(MemberOutput(membership).data, status=status.HTTP_201_CREATED)


class ProjectMemberDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Membership.Role.choices)

        class Meta:
            ref_name = "MemberRole"

    def _membership(self, request, project_id: int, user_id: int) -> Membership:
        project = project_for(request.user, project_id, min_role=Role.ADMIN)
        membership = selectors.member_of(project, user_id)
        if membership is None:
            raise NotFound(f"User {user_id} is not a member of this project.")
        return membership

    @extend_schema(request=InputSerializer, responses={200: MemberOutput, **ERRORS})
    def patch(self, request, project_id: int, user_id: int):
        """Change a member's role (admin); the last admin cannot be demoted."""
        membership = self._membership(request, project_id, user_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_set_role(membership=membership, role=data.validated_data["role"])
        return Response(MemberOutput(membership).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id: int, user_id: int):
        """Remove a member (admin); the last admin cannot be removed."""
        services.membership_remove(membership=self._membership(request, project_id, user_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class LabelOutput(serializers.Serializer):
    value = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    colour = serializers.CharField()
    side = serializers.CharField()
    pair = serializers.IntegerField(source="pair.value", allow_null=True, default=None,
                                    help_text="Value of the mirror structure (left <-> right).")


class LabelSetOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    labels = LabelOutput(many=True, source="labels.all")
    created = serializers.DateTimeField()


class ProjectLabelApi(APIView):
    class InputSerializer(serializers.Serializer):
        colour = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", help_text="#rrggbb",
                                        error_messages={"invalid": "Give the colour as #rrggbb (six hexadecimal "
                                                                   "digits), for example #ee4444."})

        class Meta:
            ref_name = "LabelColour"

    @extend_schema(request=InputSerializer, responses={200: LabelOutput, **ERRORS})
    def patch(self, request, project_id: int, value: int):
        """Change the colour of one structure of the project's label set (admin of every project using the set)."""
        project = project_for(request.user, project_id, min_role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = services.label_colour_set(project=project, value=value, colour=data.validated_data["colour"],
                                          user=request.user)
        return Response(LabelOutput(label).data)


class LabelSetListApi(APIView):
    class InputSerializer(serializers.Serializer):
        class LabelInput(serializers.Serializer):
            value = serializers.IntegerField(min_value=1, max_value=254)
            name = serializers.RegexField(r"^[A-Za-z0-9_\- ]{1,100}$", max_length=100)
            kind = serializers.CharField(max_length=20, default="muscle")
            colour = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", help_text="#rrggbb")
            side = serializers.ChoiceField(choices=Label.Side.choices, default="", allow_blank=True)
            pair = serializers.IntegerField(min_value=1, max_value=254, required=False, allow_null=True)

            class Meta:
                ref_name = "LabelCreate"

        name = serializers.CharField(max_length=100)
        description = serializers.CharField(allow_blank=True, default="")
        labels = LabelInput(many=True, allow_empty=False)

        class Meta:
            ref_name = "LabelSetCreate"

    @extend_schema(operation_id="label_sets_list", responses={200: LabelSetOutput(many=True)})
    def get(self, request):
        """All label sets (they are shared by every project)."""
        return Response(LabelSetOutput(selectors.label_sets(), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: LabelSetOutput, 400: ErrorOutput})
    def post(self, request):
        """Create a label set with its labels (any signed-in user)."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label_set = services.label_set_create(**data.validated_data)
        return Response(LabelSetOutput(selectors.label_sets().get(pk=label_set.pk)).data,
                        status=status.HTTP_201_CREATED)


class LabelSetDetailApi(APIView):
    @extend_schema(responses={200: LabelSetOutput, 404: ErrorOutput})
    def get(self, request, label_set_id: int):
        label_set = selectors.label_sets().filter(pk=label_set_id).first()
        if label_set is None:
            raise NotFound(f"No label set {label_set_id}.")
        return Response(LabelSetOutput(label_set).data)
