"""One preset loader and one `--set` reader for `latentrm run` and `latentrm rl train` (latentrm.presets)."""

from __future__ import annotations

import pytest

from latentrm.errors import LatentrmError


def test_both_loaders_refuse_the_same_bad_files_with_one_line(tmp_path):
    from latentrm.pipeline.config import load_preset as load_run
    from latentrm.rl.grpo_config import load_preset as load_rl

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(b"steps: [1, 2\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00steps")
    for load in (load_run, load_rl):
        with pytest.raises(LatentrmError, match="the preset is empty"):
            load(str(empty))
        with pytest.raises(LatentrmError, match="not valid YAML"):
            load(str(broken))
        with pytest.raises(LatentrmError, match="not UTF-8"):
            load(str(binary))
        with pytest.raises(LatentrmError, match="known presets: "):
            load("no-such-preset")


def test_set_items_read_yaml_values_and_dashes():
    from latentrm.pipeline.config import parse_sets as run_sets
    from latentrm.rl.grpo_config import parse_sets as rl_sets

    assert run_sets(["rl.learning-rate=1e-5", "features.layers=[9, 15]"]) == [
        (["rl", "learning_rate"], 1e-5), (["features", "layers"], [9, 15])]
    assert rl_sets(["learning-rate=3e-5", "lora=true"]) == {"learning_rate": 3e-5, "lora": True}
    with pytest.raises(LatentrmError, match="write section.field=value"):
        run_sets(["steps"])
    with pytest.raises(LatentrmError, match="unknown RLConfig field"):
        rl_sets(["banana=1"])
