import os

from django.core.asgi import get_asgi_application

from postroom.core.uploads import RequestSizeLimit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postroom.settings")

# Outermost: a body too large to keep in memory is refused before Django spools it to disk (R45).
application = RequestSizeLimit(get_asgi_application())
