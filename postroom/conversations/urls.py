from django.urls import path

from postroom.conversations import views, views_frame
from postroom.conversations.selectors import View

app_name = "conversations"

# Ids are matched as strings and checked by the selectors (404 for anything else). The fixed
# paths come before "<conversation_id>/", which would otherwise take their first segment.
urlpatterns = [
    path("", views.conversation_list, {"view": View.INBOX}, name="list"),
    *[path(f"{segment}/", views.conversation_list, {"view": view}, name=f"view_{view}") for view, segment in views.VIEW_PATHS.items()],
    path("team/<int:team_id>/", views.conversation_list, {"view": View.TEAM}, name="team"),
    path("label/<str:label_id>/", views.conversation_list, {"view": View.LABEL}, name="label"),
    path("nav/", views.inbox_nav, name="nav"),
    path("bulk/", views.conversation_bulk, name="bulk"),
    path("labels/", views.label_list, name="labels"),
    path("labels/<str:label_id>/update/", views.label_update, name="label_update"),
    path("labels/<str:label_id>/delete/", views.label_delete, name="label_delete"),
    path("messages/<str:message_id>/body/", views_frame.message_html_frame, name="html_frame"),
    path("messages/<str:message_id>/inline/<str:token>/", views_frame.message_inline_image, name="inline_image"),
    path("messages/<str:message_id>/raw/", views.message_raw, name="raw"),
    path("attachments/<str:attachment_id>/", views.attachment_download, name="attachment"),
    path("<str:conversation_id>/", views.conversation_detail, name="detail"),
    path("<str:conversation_id>/change/", views.conversation_change, name="change"),
    path("<str:conversation_id>/read/", views.conversation_read, name="read"),
    path("<str:conversation_id>/archive/", views.conversation_archive, name="archive"),
    path("<str:conversation_id>/inbox/", views.conversation_move_to_inbox, name="move_to_inbox"),
    path("<str:conversation_id>/trash/", views.conversation_trash, name="trash"),
    path("<str:conversation_id>/spam/", views.conversation_spam, name="spam"),
    path("<str:conversation_id>/close/", views.conversation_close, name="close"),
    path("<str:conversation_id>/reopen/", views.conversation_reopen, name="reopen"),
    path("<str:conversation_id>/snooze/", views.conversation_snooze, name="snooze"),
    path("<str:conversation_id>/unsnooze/", views.conversation_unsnooze, name="unsnooze"),
    path("<str:conversation_id>/follow/", views.conversation_follow, name="follow"),
    path("<str:conversation_id>/assign/", views.conversation_assign, name="assign"),
    path("<str:conversation_id>/unassign/", views.conversation_unassign, name="unassign"),
    path("<str:conversation_id>/label/", views.conversation_label, name="label_add"),
    path("<str:conversation_id>/unlabel/", views.conversation_unlabel, name="label_remove"),
    path("<str:conversation_id>/share/", views.conversation_share, name="share"),
    path("<str:conversation_id>/unshare/", views.conversation_unshare, name="unshare"),
]
