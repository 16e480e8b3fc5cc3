from django.urls import path

from postroom.orgs import views

urlpatterns = [
    path("<str:token>/", views.invitation_accept, name="invitation_accept"),
]
