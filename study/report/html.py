"""The report as one self-contained HTML page (``report/report.html``): the markdown rendered
with Python-Markdown (tables), every figure embedded as a data URI, and tables that wrap
instead of scrolling, so MLflow's artifact view (which shows HTML but not a markdown file's
linked images) displays the whole report, figures included."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import markdown

from study.core.io import write_text

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 1em auto; padding: 0 1em;
       line-height: 1.4; }
table { border-collapse: collapse; table-layout: auto; width: 100%; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; }
code { font-size: 0.9em; }
"""


def _embed(html: str, folder: Path) -> str:
    """Replace ``src="NAME.png"`` of a figure in ``folder`` by its bytes as a data URI (the
    image gets the id ``NAME``), and a link to a figure (``href="NAME.png"``) by a link to
    that image in the page."""
    def one(match: re.Match) -> str:
        path = folder / match.group(1)
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'id="{path.stem}" src="data:image/png;base64,{data}"'

    html = re.sub(r'src="([^"/]+\.png)"', one, html)
    return re.sub(r'href="([^"/:]+)\.png"', r'href="#\1"', html)


def write_html(md_path: Path, title: str) -> Path:
    """Render ``md_path`` (a report in its folder) to ``report.html`` beside it; its path."""
    body = markdown.markdown(md_path.read_text(), extensions=["tables"])
    page = (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{STYLE}</style></head><body>\n{_embed(body, md_path.parent)}\n"
            "</body></html>\n")
    out = md_path.with_suffix(".html")
    write_text(out, page)
    return out
