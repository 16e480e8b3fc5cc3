from django.urls import path

from postroom.web import views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("setup/", views.setup, name="setup"),
    path("privacy/", views.privacy, name="privacy"),
]
