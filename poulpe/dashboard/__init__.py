"""The dashboard page: static files served by poulpe itself (ops_api.py), no build step."""
