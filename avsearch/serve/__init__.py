"""`avsearch serve`: an HTTP API (FastAPI) and the web gallery over one index folder.

    from avsearch.serve import create_app
    app = create_app("indexes/default")          # then: uvicorn.run(app, host="127.0.0.1", port=8000)

Modules: app (routes, create_app), live (the index, re-opened on each new commit; models kept loaded),
items (ids -> rows and files), uploads (streamed, size-limited query files), thumbnails (cached JPEG
previews), describe (/api/info), errors (library errors -> {"error": ...} with a 4xx status).
"""

from __future__ import annotations

from avsearch.serve.app import create_app

__all__ = ["create_app"]
