"""The documentation's links hold: every relative link and image in README.md, GETTING_STARTED.md, MODEL_ZOO.md
and docs/*.md points at a file that exists (relative to the file that links), every ``#anchor`` into a markdown
file names one of its headings (GitHub's heading slugs), and README.md stays a front door: short, and linking to
the getting-started guide and the model zoo; MODEL_ZOO.md lists every checkpoint under checkpoints/. The checks
read text only (no Detectron2, no data)."""
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 260
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ... (any URL scheme)
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target), text with at most one level of nested brackets; target optionally in <>,
# optionally followed by a "title"
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)


def doc_files():
    return [ROOT / "README.md", ROOT / "GETTING_STARTED.md", ROOT / "MODEL_ZOO.md",
            *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                continue
            yield number, line
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):]:
            fence = None


def links(text):
    """(line number, target) of every markdown link and image outside code."""
    for number, line in prose_lines(text):
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            yield number, m.group(1).strip("<>")


def slug(heading):
    """GitHub's anchor of a heading: its text as rendered (markup dropped), lowercased, punctuation dropped but
    for hyphens, underscores and spaces, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(path):
    """Every anchor a markdown file defines: its headings' slugs (a repeated slug gets -1, -2, ... as on GitHub)
    and explicit <a name=...> / <a id=...>."""
    found, seen = set(), {}
    for _, line in prose_lines(Path(path).read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def broken_links(path):
    """The problems of one file's relative links: a target that does not exist, or an anchor its markdown file
    does not define. Empty when every link holds."""
    path = Path(path)
    problems = []
    for number, target in links(path.read_text(encoding="utf-8")):
        if not target or EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path.resolve()
        where = f"{path.name}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file {dest}")
        elif anchor and dest.suffix.lower() == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    assert doc.is_file(), f"{doc} is missing"
    problems = broken_links(doc)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_is_a_front_door():
    readme = ROOT / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move the detail into GETTING_STARTED.md, "
        f"MODEL_ZOO.md or docs/")
    targets = {target.partition("#")[0] for _, target in links("\n".join(lines))}
    for page in ("GETTING_STARTED.md", "MODEL_ZOO.md"):
        assert page in targets, f"README.md does not link to {page}"
    assert "make test" in "\n".join(lines), "README.md lost the test command (CI runs `make test`)"


def test_model_zoo_lists_every_checkpoint():
    zoo = (ROOT / "MODEL_ZOO.md").read_text(encoding="utf-8")
    headings = {m.group(2) for _, line in prose_lines(zoo) for m in [HEADING.match(line)] if m}
    missing = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "checkpoints").rglob("*.pth"))
               if f"`{p.name}`" not in headings]
    assert not missing, f"MODEL_ZOO.md has no section for {missing}: add its config, budget, metrics and command"


def test_slug_follows_github():
    assert slug("What crosses the network: payload format v2, bounded decoding") == \
        "what-crosses-the-network-payload-format-v2-bounded-decoding"
    assert slug("Your own data: `tools/train_eccentric.py`") == "your-own-data-toolstrain_eccentricpy"
    assert slug("Oracle bounds of Dynamic ECC (`tools/oracle.py`)") == "oracle-bounds-of-dynamic-ecc-toolsoraclepy"
    assert slug("Training: the recipe (commands that made the committed checkpoints)") == \
        "training-the-recipe-commands-that-made-the-committed-checkpoints"
    assert slug("`fashion_mnist_cloud_teacher_plus.pth`") == "fashion_mnist_cloud_teacher_pluspth"
    assert slug("`model_lambda0.25.pth`") == "model_lambda025pth"


def test_checker_finds_broken_links(tmp_path):
    """The check can fail: a missing file, a missing image, an anchor with no heading, each named; links in code,
    external links and good links pass."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "plot.png").write_bytes(b"\x89PNG")
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Section two: details\n\n## Section two: details\n")
    doc = tmp_path / "README.md"
    doc.write_text("\n".join([
        "# Title",
        "[good](docs/page.md) [good anchor](docs/page.md#section-two-details) [repeat](docs/page.md#section-two-details-1)",
        "![good image](docs/plot.png) [self](#title) [web](https://example.com/x.md) [mail](mailto:a@b.c)",
        "[missing file](docs/nowhere.md)",
        "![missing image](plot.png)",
        "[bad anchor](docs/page.md#no-such-heading)",
        "[bad self anchor](#nothing-here)",
        "`[in code](not_checked.md)`",
        "```",
        "[in a fence](not_checked_either.md)",
        "```",
    ]) + "\n")
    problems = broken_links(doc)
    assert len(problems) == 4, problems
    assert "README.md:4: docs/nowhere.md: no such file" in problems[0]
    assert "README.md:5: plot.png: no such file" in problems[1]
    assert "README.md:6: docs/page.md#no-such-heading: no heading with anchor #no-such-heading" in problems[2]
    assert "README.md:7: #nothing-here: no heading" in problems[3]
