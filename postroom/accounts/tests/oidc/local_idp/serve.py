"""Run the local OpenID provider: ``python -m postroom.accounts.tests.oidc.local_idp.serve``.

Reads LOCAL_IDP_STATE_DIR (holds signing-key.pem; the SQLite file goes there),
LOCAL_IDP_CONTROL_TOKEN, LOCAL_IDP_CLIENT_ID, LOCAL_IDP_CLIENT_SECRET and
LOCAL_IDP_REDIRECT_URIS (space-separated). Binds a free port on 127.0.0.1 and prints
``LISTENING <port>`` once it accepts connections.
"""

import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "postroom.accounts.tests.oidc.local_idp.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    Application.objects.create(
        name="Postroom under test",
        client_id=os.environ["LOCAL_IDP_CLIENT_ID"],
        client_secret=os.environ["LOCAL_IDP_CLIENT_SECRET"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=os.environ["LOCAL_IDP_REDIRECT_URIS"],
        algorithm=Application.RS256_ALGORITHM,
    )
    server = make_server("127.0.0.1", 0, get_wsgi_application(), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    print(f"LISTENING {server.server_port}", flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
