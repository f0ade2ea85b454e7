"""An output folder that would replace a command's own input is refused (aria_train.runs.atomic.check_free)."""
import pytest

from cli_errors import refused, snapshot
from aria_train.runs.atomic import check_free


def test_output_that_is_or_holds_an_input_is_refused(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    heldout = tmp_path / "data" / "heldout.parquet"
    heldout.parent.mkdir()
    heldout.write_bytes(b"x")
    for out, needle in ((run, "is or holds the input"), (tmp_path / "data", "is or holds the input"),
                        (heldout, "is or holds the input"), ("", "output path is empty")):
        with pytest.raises(ValueError, match=needle):
            check_free(out, overwrite=True, inputs=[run, heldout, None])
    assert check_free(run / "eval", overwrite=True, inputs=[run, heldout]) == run / "eval"  # a run's eval/ is fine


def test_pool_overwrite_refuses_to_replace_its_source(tmp_path, capsys):
    source = tmp_path / "prompts" / "pool.txt"
    source.parent.mkdir()
    source.write_text("a red circle\na blue square\n")
    before = snapshot(tmp_path / "prompts")
    refused(["pool", source, "--out", tmp_path / "prompts", "--overwrite"], capsys, "is or holds the input")
    assert snapshot(tmp_path / "prompts") == before
