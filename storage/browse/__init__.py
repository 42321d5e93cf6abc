"""What the workbench screens show: read-only questions about a workspace, as plain data.

Plain functions over an open `Workspace`, no Textual, so that every screen's content is also
testable and scriptable headless. One module per subject: `runs` (runs, the active run, the
home screen's pipeline status), `users` (the paged users table, search, filters, look-up),
`segments` (customers by crowd segment) and `user_detail` (one user's purchases, profiles and
a run's outputs for them). The one write here
is `set_active_run` (the run whose recommendations the app shows). Every public name is
importable from `storage.browse` itself.
"""

from storage.browse.common import BrowseError
from storage.browse.runs import (
    HEADLINE_METRICS,
    PipelineStatus,
    RunSummary,
    active_run,
    get_run,
    headline_metrics,
    list_runs,
    pipeline_status,
    set_active_run,
)
from storage.browse.segments import (
    SegmentDetail,
    SegmentItem,
    SegmentRow,
    SegmentsPage,
    segment_detail,
    segment_user_ids,
    segments_page,
)
from storage.browse.user_detail import (
    LIST_LABELS,
    RECOMMENDATION_LISTS,
    FacetWeights,
    MemoryPoint,
    ProfileSnapshot,
    Recommendation,
    TimelineEvent,
    UserDetail,
    check_list_name,
    group_facet_rows,
    run_has_lists,
    stored_before_lists,
    user_detail,
    user_facet_weights,
    user_memory_trace,
    user_profile_snapshots,
    user_recommendations,
    user_timeline,
)
from storage.browse.users import (
    SORTS,
    UserRow,
    UsersPage,
    attribute_label,
    data_version,
    ensure_user_stats,
    find_user,
    search_user_ids,
    users_page,
)

__all__ = [
    "HEADLINE_METRICS", "SORTS", "BrowseError", "FacetWeights", "MemoryPoint", "PipelineStatus",
    "ProfileSnapshot", "Recommendation", "RunSummary", "TimelineEvent", "UserDetail", "UserRow",
    "UsersPage", "active_run", "attribute_label", "data_version", "find_user", "get_run",
    "group_facet_rows", "headline_metrics", "list_runs", "pipeline_status", "search_user_ids",
    "set_active_run", "user_detail", "user_facet_weights", "user_memory_trace",
    "user_profile_snapshots", "user_recommendations", "user_timeline", "users_page",
    "LIST_LABELS", "RECOMMENDATION_LISTS", "check_list_name", "run_has_lists",
    "stored_before_lists", "SegmentDetail", "SegmentItem", "SegmentRow", "SegmentsPage",
    "segment_detail", "segment_user_ids", "segments_page", "ensure_user_stats",
]
