"""HTTP routers of the ingest service that live outside ``app.py`` (included by ``create_app``)."""
