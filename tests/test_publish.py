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


def test_published_stages_hard_link_the_run_and_their_cards_link_each_other(tmp_path):
    from huggingface_hub import ModelCard

    run = tmp_path / "run"
    for stage, card in (("base_lm", "# base\n"), ("pretrain", '# lm\n\nfrom_pretrained("PATH")\n')):
        (run / stage).mkdir(parents=True)
        (run / stage / "config.json").write_text("{}")
        (run / stage / "model.safetensors").write_bytes(b"weights")
        (run / stage / "README.md").write_text(f"---\nlibrary_name: transformers\n---\n{card}")
        (run / stage / "checkpoint-5").mkdir()  # resumable state is not published
    repos = prepare_run(run, "org", tmp_path / "out")
    assert [r.repo_id for r in repos] == ["org/speechtext-base-lm", "org/speechtext-lm"]
    weights, published = run / "pretrain" / "model.safetensors", tmp_path / "out" / "lm" / "model.safetensors"
    assert published.stat().st_ino == weights.stat().st_ino  # a hard link, not a second copy
    assert not (tmp_path / "out" / "lm" / "checkpoint-5").exists()
    card = ModelCard.load(tmp_path / "out" / "lm" / "README.md")
    assert card.data.base_model == "org/speechtext-base-lm" and card.data.base_model_relation == "finetune"
    assert 'from_pretrained("org/speechtext-lm")' in card.text and '"PATH"' not in card.text
    assert "[org/speechtext-base-lm](https://huggingface.co/org/speechtext-base-lm)" in card.text
    assert "org/speechtext-lm) (this repo)" in card.text and "speechtext-dialogue" not in card.text  # not published
    base = ModelCard.load(tmp_path / "out" / "base-lm" / "README.md")
    assert base.data.base_model is None and "[org/speechtext-lm](" in base.text
    # the run's own cards are untouched (publishing replaced the linked file instead of writing through it)
    assert (run / "pretrain" / "README.md").read_text().endswith('from_pretrained("PATH")\n')
    prepare_run(run, "org", tmp_path / "out")  # again: one links section, not two
    assert ModelCard.load(tmp_path / "out" / "lm" / "README.md").text.count("## speechtext repositories") == 1


def test_link_card_is_idempotent_and_a_namespace_may_contain_the_prefix(tmp_path):
    from huggingface_hub import ModelCard

    from modeling_speechtext.hub.card_links import link_card

    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "README.md").write_text('---\nlibrary_name: transformers\n---\n# lm\nfrom_pretrained("PATH")\n')
    published = {"lm": "model", "base-lm": "model", "dialogue": "dataset"}
    for _ in range(2):
        link_card(tmp_path / "lm", "lm", "speechtext-lab", published)
    card = ModelCard.load(tmp_path / "lm" / "README.md")
    assert card.text.count("## speechtext repositories") == 1 and card.text.count("speechtext-lab/speechtext-lm)") == 1
    assert card.data.base_model == "speechtext-lab/speechtext-base-lm"
    run = tmp_path / "run"
    (run / "base_lm").mkdir(parents=True)
    (run / "base_lm" / "base_lm.json").write_text('{"model_name_or_path": "THUDM/glm-4-9b"}')  # referenced, not trained
    (run / "pretrain").mkdir()
    (run / "pretrain" / "config.json").write_text("{}")
    (run / "pretrain" / "README.md").write_text("---\nlibrary_name: transformers\n---\n# lm\n")
    repos = prepare_run(run, "speechtext-lab", tmp_path / "out")  # the namespace holds "speechtext-" too
    assert [r.repo_id for r in repos] == ["speechtext-lab/speechtext-lm"]
    assert ModelCard.load(tmp_path / "out" / "lm" / "README.md").data.base_model == "THUDM/glm-4-9b"
