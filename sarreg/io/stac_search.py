"""The pages of a paged STAC search result. A STAC API search answers with its first page and a rel="next" link;
registering that page alone left the other dates out silently, so ``batch`` follows the links (GET) to the end."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urljoin

from sarreg.errors import InputError
from sarreg.io.source import Source, _self_href, load_stac

MAX_STAC_PAGES = 1000  # pages of one search result followed at most (a server whose next links never end)


def pages(src: Source, first: dict) -> list[tuple[str, dict]]:
    """``first`` (the document at ``src``) and the pages its rel="next" links lead to: (name, document) each.
    InputError for a next page behind a POST request, a loop or more than MAX_STAC_PAGES pages."""
    out, d = [(str(src), first)], first
    while nxt := next((k for k in d.get("links") or [] if k.get("rel") == "next" and k.get("href")), None):
        if (nxt.get("method") or "GET").upper() != "GET":
            raise InputError(f"{src}: the next page of this STAC search is a {nxt['method']} request; save its pages "
                             f"(or the items) as files and give them all")
        href = _join(_self_href(out[-1][0]), nxt["href"])
        if any(href == p for p, _ in out) or len(out) >= MAX_STAC_PAGES:
            raise InputError(f"{src}: the STAC search's next links lead back to a page or past {MAX_STAC_PAGES} pages")
        d = load_stac(href)
        out.append((href, d))
    return out


def _join(base: str, href: str) -> str:
    """``href`` resolved against the page at ``base`` (a URL or an absolute local path)."""
    if "://" in base:
        return urljoin(base, href)
    if "://" in href or Path(href).is_absolute():
        return href
    return str(Path(base).parent / href)
