import pytest

from ptcli.errors import UsageError
from ptcli.inference.inputs import expand_inputs

EXT = (".jpg", ".png")


@pytest.fixture
def tree(tmp_path):
    for name in ["a.jpg", "b.PNG", "notes.txt", "sub/c.jpg", "sub/deeper/d.png"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def test_folder_is_searched_recursively_for_known_extensions(tree):
    found = expand_inputs([str(tree)], EXT)
    assert [p.relative_to(tree).as_posix() for p in found] == ["a.jpg", "b.PNG", "sub/c.jpg", "sub/deeper/d.png"]


def test_file_named_explicitly_is_kept_whatever_its_extension(tree):
    assert expand_inputs([str(tree / "notes.txt")], EXT) == [tree / "notes.txt"]


def test_glob_patterns(tree):
    found = expand_inputs([str(tree / "**" / "*.jpg")], EXT)
    assert [p.name for p in found] == ["a.jpg", "c.jpg"]


def test_inputs_keep_argument_order(tree):
    found = expand_inputs([str(tree / "sub" / "c.jpg"), str(tree / "a.jpg")], EXT)
    assert [p.name for p in found] == ["c.jpg", "a.jpg"]


def test_missing_path_is_a_usage_error(tree):
    with pytest.raises(UsageError, match="no such file or folder: .*nope.jpg"):
        expand_inputs([str(tree / "nope.jpg")], EXT)


def test_glob_matching_nothing_and_empty_folder(tree):
    with pytest.raises(UsageError, match="no files match"):
        expand_inputs([str(tree / "*.gif")], EXT)
    (tree / "empty").mkdir()
    with pytest.raises(UsageError, match="no .jpg/.png files under"):
        expand_inputs([str(tree / "empty")], EXT)
