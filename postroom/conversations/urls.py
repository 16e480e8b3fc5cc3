from django.urls import path

from postroom.conversations import views, views_frame

app_name = "conversations"

# Ids are matched as strings and checked by the selectors (404 for anything else).
urlpatterns = [
    path("", views.conversation_list, name="list"),
    path("<str:conversation_id>/", views.conversation_detail, name="detail"),
    path("<str:conversation_id>/change/", views.conversation_change, name="change"),
    path("messages/<str:message_id>/body/", views_frame.message_html_frame, name="html_frame"),
    path("messages/<str:message_id>/inline/<str:token>/", views_frame.message_inline_image, name="inline_image"),
    path("messages/<str:message_id>/raw/", views.message_raw, name="raw"),
    path("attachments/<str:attachment_id>/", views.attachment_download, name="attachment"),
]
