"""The test's OpenID Connect provider: django-oauth-toolkit in its own process on loopback.

`OidcProviderProcess` starts it and drives it as its administrator and its users would: add
a person with groups, open a browser session for them, change its token settings, rotate its
signing key, and run the authorization code flow (PKCE) for any registered client.
"""

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.server import REPO_ROOT, free_port

GATEHOUSE_CLIENT = "gatehouse"
OTHER_CLIENT = "other-app"
OTHER_REDIRECT = "http://127.0.0.1/other-app/callback/"


def rsa_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class OidcProviderProcess:
    workdir: Path
    gatehouse_redirect_uris: list[str]
    port: int = field(default_factory=free_port)
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            GATEHOUSE_CLIENT: secrets.token_urlsafe(24),
            OTHER_CLIENT: secrets.token_urlsafe(24),
        }
    )
    process: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/o"

    def gatehouse_environ(self, name: str = "CORP", **extra: str) -> dict[str, str]:
        """The variables an operator would set to connect Gatehouse to this provider."""
        prefix = f"GATEHOUSE_OIDC_{name}_"
        return {
            f"{prefix}ISSUER": self.issuer,
            f"{prefix}CLIENT_ID": GATEHOUSE_CLIENT,
            f"{prefix}CLIENT_SECRET": self.secrets[GATEHOUSE_CLIENT],
            f"{prefix}LABEL": "Corp ID",
            **{prefix + key: value for key, value in extra.items()},
        }

    def start(self) -> None:
        key_file = self.workdir / "signing-key.pem"
        key_file.write_text(rsa_private_pem())
        clients = {
            GATEHOUSE_CLIENT: {
                "secret": self.secrets[GATEHOUSE_CLIENT],
                "redirect_uris": self.gatehouse_redirect_uris,
            },
            OTHER_CLIENT: {"secret": self.secrets[OTHER_CLIENT], "redirect_uris": [OTHER_REDIRECT]},
        }
        environ = {
            **os.environ,
            "PROVIDER_DB": str(self.workdir / "provider.sqlite3"),
            "PROVIDER_ISSUER": self.issuer,
            "PROVIDER_KEY_FILE": str(key_file),
            "PROVIDER_CLIENTS": json.dumps(clients),
        }
        environ.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.sso.provider.serve", str(self.port)],
            cwd=REPO_ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise RuntimeError(f"the test OpenID Connect provider exited:\n{output}")
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("the test OpenID Connect provider did not start within 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    # --- the provider's administration ------------------------------------------------------

    def person(self, username: str, *, groups: list[str] = (), amr: list[str] = ()) -> str:  # type: ignore[assignment]
        """Add or change a person; returns their `sub`."""
        answer = requests.post(
            f"{self.base_url}/test/people/",
            data=json.dumps({"username": username, "groups": list(groups), "amr": list(amr)}),
            timeout=10,
        )
        answer.raise_for_status()
        return str(answer.json()["sub"])

    def token_settings(self, **changes: Any) -> None:
        requests.post(
            f"{self.base_url}/test/token-settings/", data=json.dumps(changes), timeout=10
        ).raise_for_status()

    def browser(self, username: str) -> requests.Session:
        """A browser signed in at the provider as `username`."""
        browser = requests.Session()
        browser.get(f"{self.base_url}/test/login/{username}/", timeout=10).raise_for_status()
        return browser

    def authorize(self, browser: requests.Session, authorize_url: str) -> str:
        """Follow Gatehouse's redirect at the provider; returns where the provider sends back."""
        answer = browser.get(authorize_url, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text[:500]
        return str(answer.headers["Location"])

    def id_token_for(
        self, username: str, *, client_id: str = GATEHOUSE_CLIENT, redirect_uri: str = ""
    ) -> str:
        """Run the code flow for `client_id` outside Gatehouse (as a CLI would); its ID token."""
        redirect_uri = redirect_uri or (
            self.gatehouse_redirect_uris[0] if client_id == GATEHOUSE_CLIENT else OTHER_REDIRECT
        )
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": "openid profile email",
                "state": secrets.token_urlsafe(8),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        back = self.authorize(self.browser(username), f"{self.issuer}/authorize/?{query}")
        code = parse_qs(urlsplit(back).query)["code"][0]
        answer = requests.post(
            f"{self.issuer}/token/",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "client_secret": self.secrets[client_id],
                "code_verifier": verifier,
            },
            timeout=10,
        )
        answer.raise_for_status()
        return str(answer.json()["id_token"])
