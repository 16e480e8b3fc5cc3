from django.apps import AppConfig


class ImageProxyConfig(AppConfig):
    name = "postroom.imageproxy"
    label = "imageproxy"
