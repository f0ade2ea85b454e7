"""The README and the documents under docs/ link to files that exist and to headings they have: the
test-bed and benchmark details live in their own documents, whose figures sit one folder up from the
README's view of them, so a moved section or figure must not leave a dead link behind."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {heading_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_link_reaches_a_file_or_heading(document):
    text = document.read_text()
    own_anchors = anchors(text)
    dead = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            dead.append(target)
        elif fragment and fragment not in (own_anchors if not path else anchors(linked.read_text())):
            dead.append(target)
    assert not dead, f"{document.name}: dead links {dead}"


def test_heading_anchor_follows_github():
    assert heading_anchor("The map's tau = 0 cell (stage 0; one H200, 2026-12-03)") == \
        "the-maps-tau--0-cell-stage-0-one-h200-2026-12-03"
