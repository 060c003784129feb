"""`speechtext publish` input checks (the full round trip through the fake Hub runs in the micro e2e test)."""

import pytest

from modeling_speechtext.cli.main import main
from modeling_speechtext.hub.publish import prepare_run


def test_publish_refuses_a_bad_namespace_a_missing_run_and_a_run_with_nothing_finished(tmp_path, capsys):
    with pytest.raises(ValueError, match="without '/'"):
        prepare_run(tmp_path, "org/name", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        prepare_run(tmp_path / "missing", "org", tmp_path / "out")
    (tmp_path / "run" / "sft").mkdir(parents=True)  # a stage folder without a model in it
    with pytest.raises(FileNotFoundError, match="no finished stage"):
        prepare_run(tmp_path / "run", "org", tmp_path / "out")
    assert main(["publish", "--run", str(tmp_path / "missing"), "--namespace", "org"]) == 2
    assert "no such run folder" in capsys.readouterr().err
