"""The README's configuration table is the settings object's own."""

from __future__ import annotations

from fleet.settings import PROJECT_ROOT, settings_table


def test_readme_settings_table_is_current():
    readme = (PROJECT_ROOT / "README.md").read_text()
    start = readme.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == settings_table().strip(), "run `fleet config --markdown`"
