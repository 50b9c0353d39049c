"""The chart README is generated from values.yaml and kept current."""

import pytest
import yaml

from tools.chart_docs import parse_values, render_readme

from .conftest import CHART_DIR


def test_readme_is_generated_from_the_current_values():
    assert (CHART_DIR / "README.md").read_text() == render_readme()


def test_every_value_is_documented():
    docs = parse_values((CHART_DIR / "values.yaml").read_text())
    documented = {doc.key for doc in docs}
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

    def leaves(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and path not in documented:
                yield from leaves(value, path + ".")
            else:
                yield path

    assert set(leaves(values)) <= documented
    assert all(doc.description for doc in docs)


def test_an_undocumented_value_is_refused():
    with pytest.raises(ValueError, match="without a '# --' description: \\['b'\\]"):
        parse_values("# -- documented\n# @upgrade in-place\na: 1\nb: 2\n")


def test_a_value_without_an_upgrade_class_is_refused():
    with pytest.raises(ValueError, match=r"without '# @upgrade' .*: \['a', 'b'\]"):
        parse_values("# -- no class\na: 1\n# -- a class that does not exist\n# @upgrade sometimes\nb: 2\n")


def test_the_upgrade_class_is_not_part_of_the_description():
    (doc,) = parse_values("# -- first line\n# second line\n# @upgrade rayservice\na: 1\n")
    assert (doc.description, doc.upgrade) == ("first line second line", "rayservice")


def test_documented_maps_cover_their_children_and_lists_are_skipped():
    docs = parse_values(
        "# -- resources\n# @upgrade new-cluster\nres:\n  limits:\n    cpu: 1\n"
        "# -- tolerations\n# @upgrade not-propagated\ntol:\n  - key: x\n    operator: Exists\n"
    )
    assert [(d.key, d.type) for d in docs] == [("res", "object"), ("tol", "list")]
