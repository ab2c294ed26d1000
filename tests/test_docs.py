"""The documentation site builds in strict mode (a broken link or a page missing from the nav fails), and the
tables generated from the code are in it: every setting, every route's scope, the benchmark results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.scopes import RULES
from config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_site_builds_strict_with_the_generated_tables(tmp_path: Path) -> None:
    site = tmp_path / "site"
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(mkdocs, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr

    settings_page = (site / "settings" / "index.html").read_text()
    for name in Settings.model_fields:
        assert f"IMGSEARCH_{name.upper()}" in settings_page, name
    access_page = (site / "access" / "index.html").read_text()
    for method, path in RULES:
        assert f"{method} {path}" in access_page, (method, path)
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    benchmarks_page = (site / "benchmarks" / "index.html").read_text()
    for line in results.splitlines():
        if line.startswith("## "):
            assert line[3:].split(" (")[0].replace("&", "&amp;") in benchmarks_page, line


def test_the_readme_is_short_and_links_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    for page in ("getting-started", "access", "settings", "benchmarks", "architecture", "api"):
        assert f"docs/{page}.md" in readme and (ROOT / "docs" / f"{page}.md").exists()
    assert "make test" in readme and "make run" in readme


def test_a_rewritten_benchmark_section_keeps_every_section_includable(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from results_file import write_section

    results = tmp_path / "RESULTS.md"
    write_section("one", "## one: first\n\n| a |\n", results)
    write_section("two", "## two: second\n\nb", results)
    write_section("one", "## one: again\n\nc", results)
    text = results.read_text()
    assert text.count("[start:one]") == text.count("[end:one]") == 1 and "## one: first" not in text
    assert text.count("[start:two]") == text.count("[end:two]") == 1 and "## two: second" in text
    real = (ROOT / "bench" / "RESULTS.md").read_text()
    assert real.count("[start:") == real.count("[end:") == real.count("\n## ")
