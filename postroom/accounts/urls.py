from django.urls import path

from postroom.accounts import views

app_name = "accounts"

urlpatterns = [
    path("security/", views.security, name="security"),
]
