"""Icons are drawn from ``web/icons.py`` by ``{% icon %}`` (and ``web/icon.html``): constant
SVG markup, with the one value a template passes, the CSS class, escaped."""

from __future__ import annotations

from django.template import engines

from postroom.web.icons import ICONS


def render(source: str, **context: object) -> str:
    return engines["django"].from_string(source).render(context)


def test_an_icon_is_its_svg_and_the_class_is_escaped() -> None:
    html = render('{% include "web/icon.html" with name="mail" class=css %}', css='x" onload="alert(1)')
    assert html.startswith('<svg class="icon x&quot; onload=&quot;alert(1)" viewBox="0 0 24 24"')
    assert ICONS["mail"] in html
    assert render('{% load ui %}{% icon "trash" "icon-sm" %}') == (
        f'<svg class="icon icon-sm" viewBox="0 0 24 24" aria-hidden="true" focusable="false">{ICONS["trash"]}</svg>'
    )


def test_an_unknown_icon_draws_nothing_inside() -> None:
    assert render('{% load ui %}{% icon name %}', name="<script>") == (
        '<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false"></svg>'
    )
