from django.urls import path

from postroom.live import views

app_name = "live"

urlpatterns = [
    path("", views.event_stream, name="events"),
]
