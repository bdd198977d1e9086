"""The documentation stays true to the tree: README.md and the package docstring name every subpackage
of src/clipmech, every section of methods.md that a docstring or comment cites exists in
docs/methods.md, every relative link of README.md and docs/*.md points at a file, and no README line is
longer than 120 characters."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "clipmech"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
METHODS = DOCS / "methods.md"

NUMBER = r"\d+(?:\.\d+)?"
# "methods.md Sec. 5", "Sec. 3.1", "Secs. 2, 6", "Secs. 5-6", "Secs. 5, 7, 8, 9" (a sentence's final dot is
# not part of the number: "Sec. 3." cites 3).
CITATION = re.compile(rf"methods\.md,? Secs?\. ({NUMBER}(?:(?:, | and |-){NUMBER})*)")
HEADING = re.compile(rf"^#{{2,3}} ({NUMBER})\.?\s", re.MULTILINE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def subpackages():
    return sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))


def cited_sections():
    """Section numbers cited as methods.md Sec(s). under src/, with the files citing each."""
    cited = {}
    for path in sorted((ROOT / "src").rglob("*.py")):
        for match in CITATION.finditer(path.read_text()):
            for part in re.split(r", | and ", match.group(1)):
                if "-" in part:
                    first, last = part.split("-")
                    numbers = [first, last]
                    if first.isdigit() and last.isdigit():
                        numbers = [str(n) for n in range(int(first), int(last) + 1)]
                else:
                    numbers = [part]
                for number in numbers:
                    cited.setdefault(number, set()).add(str(path.relative_to(ROOT)))
    return cited


def markdown_files():
    return [README, *sorted(DOCS.glob("*.md"))]


def test_subpackages_found():
    assert {"data", "models", "stages"} <= set(subpackages())


@pytest.mark.parametrize("name", subpackages())
def test_readme_names_subpackage(name):
    # A line of the map of the code: "  data/            Shapes synthesis, ..."
    line = re.compile(rf"^ +{re.escape(name)}/ +\S", re.MULTILINE)
    assert line.search(README.read_text()), f"README.md's map of the code lacks src/clipmech/{name}/"


@pytest.mark.parametrize("name", subpackages())
def test_package_docstring_names_subpackage(name):
    docstring = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    assert f":mod:`.{name}`" in docstring, f"the docstring of src/clipmech/__init__.py lacks :mod:`.{name}`"


def test_package_docstring_points_at_methods():
    docstring = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    assert "docs/methods.md" in docstring
    assert "shared" not in docstring


def test_cited_sections_exist():
    cited = cited_sections()
    assert len(cited) >= 10, f"found only the citations {sorted(cited)}: has the citation style changed?"
    headings = set(HEADING.findall(METHODS.read_text()))
    missing = {number: sorted(files) for number, files in cited.items() if number not in headings}
    assert not missing, f"docs/methods.md lacks the cited sections (## N. / ### N.M headings): {missing}"


def test_methods_sections_numbered_one_to_eleven():
    top = [number for number in HEADING.findall(METHODS.read_text()) if "." not in number]
    assert top == [str(n) for n in range(1, 12)]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_readme_links_every_docs_page():
    linked = set(LINK.findall(README.read_text()))
    unlinked = [page.name for page in sorted(DOCS.glob("*.md")) if f"docs/{page.name}" not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


def test_readme_lines_at_most_120_characters():
    long = [(n, len(line)) for n, line in enumerate(README.read_text().splitlines(), 1) if len(line) > 120]
    assert not long, f"README.md lines over 120 characters (line, length): {long}"
