from django.urls import path

from postroom.accounts import views

app_name = "accounts"

urlpatterns = [
    path("security/", views.security, name="security"),
    path("sessions/<int:session_id>/end/", views.session_end, name="session_end"),
]
