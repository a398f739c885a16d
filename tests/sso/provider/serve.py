"""Run the test provider: migrate its database, register two clients, serve on loopback.

`python -m tests.sso.provider.serve PORT` with PROVIDER_DB, PROVIDER_ISSUER, PROVIDER_KEY_FILE
and PROVIDER_CLIENTS (JSON: client id → {secret, redirect_uris}) in the environment.
"""

import json
import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        return


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.sso.provider.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0, interactive=False)
    for client_id, client in json.loads(os.environ["PROVIDER_CLIENTS"]).items():
        Application.objects.filter(client_id=client_id).delete()
        Application.objects.create(
            name=client_id,
            client_id=client_id,
            client_secret=client["secret"],
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=" ".join(client["redirect_uris"]),
            algorithm=Application.RS256_ALGORITHM,
            skip_authorization=True,
        )
    server = make_server(
        "127.0.0.1",
        int(sys.argv[1]),
        get_wsgi_application(),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
