"""Container images built from Debian's packages (no registry needed), and the container engine
settings this kind of host needs: ``python -m deploy.images build``."""
