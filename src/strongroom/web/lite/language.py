"""The visible language switch (issue #5, part 3).

A POST form (with its CSRF token, like every form) rather than a GET link: changing a setting
is not something a link, a prefetch or a crawler should do, and a form works without any
script. It sets the ``lang`` cookie for a year and sends the browser back to the page it came
from (``next``, only ever a path of this site under ``/app``, ``/console`` or ``/reserves``, the
public proof-of-reserves pages, which show the same switch).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from strongroom.web import cookies, core, i18n
from strongroom.web.lite.layout import HOME, PREFIX

router = APIRouter(prefix=PREFIX)
RETURN_PREFIXES: Final = ("/app", "/console", "/reserves", "/merchant")


@router.post("/language")
def switch_language(
    request: Request,
    lang: Annotated[str, Form(max_length=16)] = "",
    next_path: Annotated[str, Form(alias="next", max_length=core.LOCAL_PATH_MAX_CHARS)] = "",
) -> Response:
    response = RedirectResponse(core.local_path(next_path, HOME, RETURN_PREFIXES), 303)
    if lang in i18n.LANGUAGES:
        cookies.put(
            response,
            request,
            i18n.LANGUAGE_COOKIE,
            lang,
            max_age_s=i18n.LANGUAGE_COOKIE_MAX_AGE_S,
        )
    return core.secure_headers(response)
