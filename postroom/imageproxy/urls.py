from django.urls import path

from postroom.imageproxy import views

app_name = "imageproxy"

urlpatterns = [
    path("proxy/<str:token>/", views.image_proxy, name="proxy"),
    path("senders/<str:message_id>/", views.image_sender_choice, name="sender_choice"),
]
