"""The README's PromQL examples are what people paste: each parses, and names only series we export."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.support.deploy import CONTRACT, RULES_FILE, load_yaml, metric_names, recorded_names, run
from tests.support.tools import REPO

BLOCK = re.compile(r"```promql\n(.*?)```", re.S)


def readme_queries(text: str) -> list[tuple[str, str]]:
    """(comment, query) pairs: a `#` line names the query that follows it, up to the next comment."""
    queries: list[tuple[str, list[str]]] = []
    for block in BLOCK.findall(text):
        for line in block.splitlines():
            if line.startswith("#"):
                if not queries or queries[-1][1]:
                    queries.append((line.lstrip("# "), []))
                else:  # a comment continued on the next line
                    queries[-1] = (f"{queries[-1][0]} {line.lstrip('# ')}", [])
            elif line.strip():
                queries[-1][1].append(line)
    return [(comment, "\n".join(lines)) for comment, lines in queries]


QUERIES = readme_queries((REPO / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_the_agent_queries_the_issue_asks_for() -> None:
    comments = " | ".join(comment.lower() for comment, _ in QUERIES)
    for topic in ("leaderboard", "regression per model", "timeout share per model"):
        assert topic in comments, comments
    assert all(query for _, query in QUERIES), QUERIES


def test_each_query_parses(promtool: str, tmp_path: Path) -> None:
    rules = [{"record": f"readme:query_{i}", "expr": query} for i, (_, query) in enumerate(QUERIES)]
    rules_file = tmp_path / "readme-queries.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "readme", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(rules_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_each_query_names_only_exported_or_recorded_series() -> None:
    recorded = {r["record"] for g in load_yaml(RULES_FILE)["groups"] for r in g["rules"] if "record" in r}
    for comment, query in QUERIES:
        unknown = metric_names(query) - CONTRACT
        assert not unknown, f"{comment}: {unknown}"
        assert recorded_names(query) <= recorded, comment
        assert "[7d]" not in query, f"{comment}: read the recorded 7-day baseline instead"


def test_a_comment_splits_queries_and_a_continued_comment_does_not() -> None:
    text = "```promql\n# a\n# more\nx\n  + y\n\n# b\nz\n```\n"
    assert readme_queries(text) == [("a more", "x\n  + y"), ("b", "z")]
