"""The Sanic application: routes, auth, rate limits, errors and response shapes."""

from banatie_local.http.app import create_app

__all__ = ["create_app"]
