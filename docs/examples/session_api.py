#!/usr/bin/env python3
"""Write a session's upstream tokens through the extauthz session API, then
read back their metadata. Standard library only.

What an authorization server does after a user logged in at an upstream
provider: store the provider's tokens under the session ID (the `tsid` claim
of the JWTs it issues) and the binding (the `sub` and client ID of those
JWTs). Tokens are read from the environment, never from the command line
(where `ps` would show them), and never printed.

Environment:
  EXTAUTHZ_ADMIN_URL      the API's base URL, e.g. https://extauthz-admin:8443
  EXTAUTHZ_ADMIN_TOKEN    a client-credentials access token with the scope
                          extauthz:sessions
  EXTAUTHZ_ADMIN_CA       optional: a CA file to verify the server's certificate
  UPSTREAM_ACCESS_TOKEN   the provider's access token
  UPSTREAM_REFRESH_TOKEN  optional: the provider's refresh token

Usage:
  session_api.py SESSION PROVIDER SUBJECT CLIENT_ID [--expires-in SECONDS]

Prints the write's outcome and the metadata (no token: presence and length
only) as JSON; exits 1 on any failure, with the API's problem details.
"""

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request


class APIError(Exception):
    """A failed call: the HTTP status and the RFC 9457 problem details."""

    def __init__(self, status, problem):
        super().__init__(f"HTTP {status}: {problem.get('detail', problem.get('title', ''))}")
        self.status = status
        self.problem = problem


class SessionAPI:
    """A small client of the session API."""

    def __init__(self, base_url, token, cafile=None, timeout=30):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if cafile else None

    def _call(self, method, path, body=None):
        data = None
        headers = {"Authorization": "Bearer " + self.token, "Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            try:
                problem = json.load(e)
            except ValueError:
                problem = {"title": e.reason}
            raise APIError(e.code, problem) from None

    @staticmethod
    def _row(session, provider=None):
        path = "/v1/sessions/" + urllib.parse.quote(session, safe="")
        if provider is not None:
            path += "/providers/" + urllib.parse.quote(provider, safe="")
        return path

    def put(self, session, provider, write):
        """Stores write (a SessionWrite); returns (created, metadata)."""
        status, metadata = self._call("PUT", self._row(session, provider), write)
        return status == 201, metadata

    def get(self, session, provider=None):
        """The metadata of one row, or of every row of the session."""
        return self._call("GET", self._row(session, provider))[1]

    def delete(self, session, provider=None, revoke=False):
        """Deletes the row(s), revoking them at the provider first when asked."""
        query = "?revoke=true" if revoke else ""
        return self._call("DELETE", self._row(session, provider) + query)[1]


def main():
    parser = argparse.ArgumentParser(description="Write a session through the extauthz session API and read it back.")
    parser.add_argument("session", help="the session ID (the JWTs' tsid claim)")
    parser.add_argument("provider", help="a provider configured in extauthz")
    parser.add_argument("subject", help="the sub of the session's JWTs")
    parser.add_argument("client_id", help="the client ID of the session's JWTs")
    parser.add_argument("--expires-in", type=int, help="seconds until the access token expires")
    args = parser.parse_args()

    try:
        base_url = os.environ["EXTAUTHZ_ADMIN_URL"]
        api = SessionAPI(base_url, os.environ["EXTAUTHZ_ADMIN_TOKEN"], cafile=os.environ.get("EXTAUTHZ_ADMIN_CA"))
        write = {
            "subject": args.subject,
            "client_id": args.client_id,
            "access_token": os.environ["UPSTREAM_ACCESS_TOKEN"],
        }
    except KeyError as e:
        print(f"session_api.py: the environment variable {e.args[0]} is not set", file=sys.stderr)
        return 2
    if os.environ.get("UPSTREAM_REFRESH_TOKEN"):
        write["refresh_token"] = os.environ["UPSTREAM_REFRESH_TOKEN"]
    if args.expires_in is not None:
        write["expires_in"] = args.expires_in

    try:
        created, _ = api.put(args.session, args.provider, write)
        print("created" if created else "replaced")
        print(json.dumps(api.get(args.session, args.provider), indent=2, sort_keys=True))
    except APIError as e:
        print(f"session_api.py: {e}", file=sys.stderr)
        for field in e.problem.get("errors", []):
            print(f"  {field['field']}: {field['message']}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        print(f"session_api.py: cannot reach {base_url}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
