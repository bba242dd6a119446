"""One page of a registry's tag list, parsed within a bound on how many tags it may hold.

``json.loads`` of a 30 MB page of 3.4 million tags builds millions of strings
before anyone can count them (555 MB peak for ``versions``). A page is therefore
counted before it is parsed: a tag list holds little but its tag strings, so the
number of double quotes bounds the number of strings in it cheaply, without
allocating any. A page that could hold more than the caller has room for is
refused at once; only one that fits is parsed.
"""

from __future__ import annotations

import json

from ..errors import IntegrityError

# strings a page may hold besides its tags: "name" and its value, "tags", and the
# few extra fields some registries add (a GCR/GAR-style "manifest" map is counted too)
_OTHER_STRINGS = 1024


def parse_tag_page(data: bytes, what: str, room: int, limit: int) -> list[str]:
    """The ``tags`` of one tag-list page; IntegrityError if malformed or over ``room`` tags.

    ``room`` is how many more tags the caller takes, of ``limit`` in all.
    """
    strings = data.count(b'"') // 2
    if strings > 2 * room + _OTHER_STRINGS:  # twice: room for the extra fields of a big page
        raise _too_many(what, limit)
    try:
        page = json.loads(data).get("tags") or []
    except (ValueError, AttributeError, RecursionError):
        raise IntegrityError(f"{what} is not valid JSON") from None
    if not isinstance(page, list) or not all(isinstance(tag, str) for tag in page):
        raise IntegrityError(f"{what} is malformed")
    if len(page) > room:
        raise _too_many(what, limit)
    return page


def _too_many(what: str, limit: int) -> IntegrityError:
    return IntegrityError(
        f"{what} has over {limit} tags, more than modelreg lists",
        "the repository has too many tags to list, or the registry is broken or hostile; "
        "clean it up (modelreg gc) or ask its operator",
    )
