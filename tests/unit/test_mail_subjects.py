"""Subjects made of text and ``{{ name }}`` placeholders are joined without Jinja (issue #14):
each must read exactly as Jinja renders it, and anything else is still Jinja's."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
import pytest

import strongroom.app  # noqa: F401  (every domain registers its templates on import)
from strongroom.notify import render, templates

ALL = templates.all_templates()
ODD_VALUES: list[object] = [None, 0, -12, "", "{{ name }}", "a\tb  c", "<b>&amp;", 1.5]


def jinja(source: str, context: dict[str, object]) -> str:
    return render._subject_template(source).render(context)


@pytest.mark.parametrize("template", ALL, ids=[t.id for t in ALL])
def test_every_registered_subject_reads_as_jinja_renders_it(template):
    context = {"name": "Alice Chan", **template.sample}
    assert render._render_subject(template.subject, context) == jinja(template.subject, context)
    for value in ODD_VALUES:
        odd = {key: value for key in context}
        assert render._render_subject(template.subject, odd) == jinja(template.subject, odd)


def test_the_receipt_subjects_take_the_plain_path():
    for template_id in ("payments.p2p_sent", "payments.p2p_received"):
        assert render._subject_parts(templates.get(template_id).subject) == (
            "Receipt: you sent " if template_id.endswith("sent") else "Receipt: you received ",
            "amount",
            "",
        )


@pytest.mark.parametrize(
    "source",
    [
        "Hello {{ name|upper }}",
        "{% if name %}Hi {{ name }}{% endif %}",
        "Total {{ amount + 1 }}",
        "{# note #}Hi {{ name }}",
        "Sent {{ when|when }}",
        "a } b { c",
    ],
)
def test_anything_but_plain_placeholders_is_left_to_jinja(source):
    assert render._subject_parts(source) is None
    context: dict[str, object] = {
        "name": "bo",
        "amount": 2,
        "when": datetime(2026, 1, 2, tzinfo=UTC),
    }
    assert render._render_subject(source, context) == jinja(source, context)


def test_a_missing_value_is_refused_as_jinja_refuses_it():
    with pytest.raises(jinja2.UndefinedError):
        render._render_subject("Welcome {{ name }}", {})
