"""The public proof-of-reserves pages at ``/reserves`` (R-POR-3, R-POR-4): the published audits
and ``/reserves/verify``, where a user checks their inclusion proof in the browser.

The web layer's third part, beside the Lite app (``lite/``) and the console (``console/``), and
built like them: ``router`` mounts the screen modules with CSRF protection on every unsafe
request (``csrf.protect``; the pages only read, and the language switch posts to ``/app``), the
templates are under ``templates/reserves/`` and extend the shared ``web/base.html`` with
``base.css``, the static files under ``static/reserves/``, the strings are the ``reserves``
catalog domain (``babel-reserves.cfg``). The domain (``strongroom.reserves``) knows nothing of
these pages; they read it through ``reserves.service``.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Depends

from strongroom.web import csrf
from strongroom.web.reserves import pages

SCREENS: Final = (pages.router,)

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf.protect)])
for screen in SCREENS:
    router.include_router(screen)
