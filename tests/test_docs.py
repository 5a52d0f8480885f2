"""The README and the guides in docs/: every relative link reaches a file, and an anchor a
heading of it, so the short README and the reference it points to cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match[1].strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def test_every_relative_link_reaches_a_file_and_a_heading() -> None:
    broken = []
    for page in PAGES:
        for match in re.finditer(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            target = match[1]
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_the_readme_links_every_guide() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for guide in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{guide.name})" in readme, guide.name


def test_the_readme_stays_short() -> None:
    """The ten-minute read: what it is, the two commands, configure, deploy once, everyday use."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 220
