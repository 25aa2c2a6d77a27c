"""The web layer: the Lite app for users (``lite/``), the operator console (``console/``) and
the public proof-of-reserves pages (``reserves/``), rendered on the server (issue #5).
``core`` (Jinja2, ``render``, ``static_url``, security headers), ``i18n`` (catalogs, languages,
amounts and dates), ``csrf``, ``cookies``, ``sessions`` (the signed-in browser) and ``errors``
(HTML error pages) are shared by every part. How to add a screen: ``README.md`` in this folder.

The web layer calls the domain services exactly as the HTTP API does and holds no business
rule of its own; nothing outside ``app.py`` and ``cli.py`` imports it (the import-linter
contracts in ``pyproject.toml`` check that no domain does).
"""
