"""Deployment helpers: the local stack launcher lives in :mod:`deploy.local`."""
