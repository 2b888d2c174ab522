"""Every write of the acquisition app (split by subject; import from here)."""

from backend.acquisition.services_queries import (  # noqa: F401
    LOCK_SECONDS,
    QueryLocked,
    SubmissionRejected,
    query_claim,
    query_claim_next,
    query_release,
    query_submit,
)
from backend.acquisition.services_segmentation import segmentation_request  # noqa: F401
from backend.acquisition.services_steps import (  # noqa: F401
    StepConflict,
    step_cancel,
    step_start,
    step_transition,
)
from backend.acquisition.services_training import (  # noqa: F401
    project_acquisition_configure,
    training_set_seed,
)
