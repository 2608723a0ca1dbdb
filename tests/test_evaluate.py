"""lm-eval on in-memory models, offline, and the likelihood scores used for swaps and retention."""

import dataclasses

import pytest

from harness.errors import BadInputError
from harness.measure import evaluate
from harness.sources import models, synthetic

TINY_EVAL = evaluate.EvalOptions(limit=40, num_fewshot=0, max_gen_toks=40, batch_size=8)


def test_local_task_folder_holds_data_and_rendered_yaml(isolated_cache):
    folder = evaluate.local_task_folder(TINY_EVAL)
    for name in (
        "gsm8k_train.jsonl",
        "gsm8k_test.jsonl",
        "mmlu_dev.jsonl",
        "mmlu_test.jsonl",
        "gsm8k_local.yaml",
        "mmlu_local.yaml",
    ):
        assert (folder / name).is_file(), name
    yaml_text = (folder / "gsm8k_local.yaml").read_text()
    assert "{data_dir}" not in yaml_text and "gsm8k/gsm8k.yaml" in yaml_text


@pytest.mark.slow
def test_lm_eval_scores_the_sft_model_clearly_above_the_base(tiny_pair):
    tokenizer = models.load_tokenizer(models.ModelRef(str(tiny_pair.sft_dir)))
    scores = {}
    for label, directory in (("base", tiny_pair.base_dir), ("sft", tiny_pair.sft_dir)):
        model = models.load_model(models.ModelRef(str(directory)), device="cpu")
        scores[label] = evaluate.lm_eval_scores(model, tokenizer, ["gsm8k_local", "mmlu_local"], TINY_EVAL)
    gsm_base, gsm_sft = scores["base"]["gsm8k_local"], scores["sft"]["gsm8k_local"]
    assert gsm_base["metric"] == "exact_match,strict-match" and gsm_base["n"] == 40
    assert gsm_sft["score"] - gsm_base["score"] > 3 * max(gsm_sft["stderr"], 0.01), scores
    assert 0.0 <= scores["sft"]["mmlu_local"]["score"] <= 1.0 and scores["sft"]["mmlu_local"]["stderr"] > 0


def test_a_real_task_offline_is_unavailable_not_zero(micro_pair, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = models.ModelRef(str(micro_pair.sft_dir))
    model, tokenizer = models.load_model(ref, device="cpu"), models.load_tokenizer(ref)
    with pytest.raises(evaluate.TaskUnavailable, match="gsm8k_local"):
        evaluate.lm_eval_scores(model, tokenizer, ["gsm8k"], evaluate.EvalOptions(limit=2))


def test_a_task_lm_eval_does_not_know_is_refused_and_any_task_it_knows_is_taken():
    # the index of lm-eval's own tasks, built once per process (a real task's test above builds it too)
    with pytest.raises(BadInputError, match=r"lm-eval \S+ has no task gsm9k: .*`lm-eval ls tasks`.*gsm8k_local"):
        evaluate.check_tasks(["gsm8k", "gsm9k"], evaluate.EvalOptions())
    evaluate.check_tasks(["gsm8k", "mmlu", "gsm8k_local", "arc_easy"], evaluate.EvalOptions())


def test_a_task_outside_the_harness_s_own_is_read_at_its_first_preferred_metric():
    arc = {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.01, "acc_norm,none": 0.6}
    assert evaluate.primary_metric("arc_easy", arc) == "acc,none"
    assert evaluate.primary_metric("gsm8k", {"exact_match,flexible-extract": 0.2}) == "exact_match,strict-match"
    assert (
        evaluate.primary_metric("story", {"alias": "story", "bleu,none": 3.0, "bleu_stderr,none": 1.0}) == "bleu,none"
    )
    with pytest.raises(BadInputError, match="reported no score for task 'empty'"):
        evaluate.primary_metric("empty", {"alias": "empty"})


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_answers_longer_than_the_models_context_are_refused_in_one_line_naming_the_setting(micro_pair, isolated_cache):
    ref = models.ModelRef(str(micro_pair.sft_dir))
    model, tokenizer = models.load_model(ref, device="cpu"), models.load_tokenizer(ref)
    assert model.config.max_position_embeddings == 256
    longest = evaluate.EvalOptions(limit=1, num_fewshot=0, max_gen_toks=256)
    with pytest.raises(BadInputError, match=r"up to 256 tokens, but the model's context is 256 tokens: .*max_gen_toks"):
        evaluate.lm_eval_scores(model, tokenizer, ["gsm8k_local"], longest)
    shorter = evaluate.lm_eval_scores(model, tokenizer, ["gsm8k_local"], dataclasses.replace(longest, max_gen_toks=8))
    assert shorter["gsm8k_local"]["n"] == 1


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_more_shots_than_a_task_holds_are_refused_in_one_line_naming_the_setting(micro_pair, isolated_cache):
    ref = models.ModelRef(str(micro_pair.sft_dir))
    model, tokenizer = models.load_model(ref, device="cpu"), models.load_tokenizer(ref)
    too_many = evaluate.EvalOptions(limit=1, num_fewshot=50, max_gen_toks=8)
    with pytest.raises(
        BadInputError,
        match=r"^50 shots \(--num-fewshot, evaluation.num_fewshot\) are more examples than mmlu_local holds for its "
        r"shots \(number of fewshot samples requested exceeds the 5 that are available\): ask for fewer",
    ):
        evaluate.lm_eval_scores(model, tokenizer, ["mmlu_local"], too_many)
    assert evaluate.lm_eval_scores(model, tokenizer, ["mmlu_local"], dataclasses.replace(too_many, num_fewshot=5))


@pytest.mark.slow
def test_answer_log_likelihood_prefers_the_fine_tuned_model(tiny_pair):
    records = [synthetic.gsm8k_record(0, "test", i) for i in range(30)]
    tokenizer = models.load_tokenizer(models.ModelRef(str(tiny_pair.sft_dir)))
    base = evaluate.answer_log_likelihood(
        models.load_model(models.ModelRef(str(tiny_pair.base_dir)), device="cpu"), tokenizer, records
    )
    sft = evaluate.answer_log_likelihood(
        models.load_model(models.ModelRef(str(tiny_pair.sft_dir)), device="cpu"), tokenizer, records
    )
    assert sft["score"] > base["score"] + 5 * (sft["stderr"] + base["stderr"])
    assert len(sft["per_item"]) == 30


def test_perplexity_by_hand_on_a_uniform_model(micro_pair):
    import torch

    ref = models.ModelRef(str(micro_pair.sft_dir))
    model, tokenizer = models.load_model(ref, device="cpu"), models.load_tokenizer(ref)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every token equally likely: perplexity = vocabulary size
    result = evaluate.perplexity(model, tokenizer, ["a short text", "another one that is longer"])
    assert result["perplexity"] == pytest.approx(model.config.vocab_size, rel=1e-4)


@pytest.mark.slow
def test_evaluate_takes_lm_evals_option_spelling_and_keeps_its_expected_warnings_out(tmp_path, capsys, caplog):
    import logging

    from harness import cli
    from harness.output import reports

    caplog.set_level(logging.INFO)
    out = tmp_path / "scores.json"
    assert (
        cli.main(
            [
                "evaluate",
                "--pair",
                "tiny_olmo2",
                "--tasks",
                "gsm8k_local,mmlu_local",
                "--limit",
                "4",
                "--num_fewshot",
                "0",
                "--batch_size",
                "4",
                "--max_gen_toks",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "gsm8k_local" in printed and "mmlu_local" in printed
    stored = reports.load_report(out)
    assert stored["kind"] == "evaluate" and set(stored["scores"]["base"]) == {"gsm8k_local", "mmlu_local"}
    assert stored["scores"]["sft"]["gsm8k_local"]["options"]["num_fewshot"] == 0
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert not any(text in logged for text in evaluate.EXPECTED_WARNINGS)


@pytest.mark.parametrize("micro_pair", ["olmo2"], indirect=True)
def test_a_real_benchmark_is_scored_on_every_item_unless_asked_otherwise(micro_pair, monkeypatch, capsys):
    """Published GSM8K and MMLU scores use the whole test split: so do a user's pair's by default."""
    from harness import cli

    asked = []

    def scores(model, tokenizer, tasks, options):
        asked.append((tuple(tasks), options))
        return {task: {"score": 0.5, "stderr": 0.01, "metric": "acc,none"} for task in tasks}

    monkeypatch.setattr(evaluate, "lm_eval_scores", scores)
    assert cli.main(["evaluate", "--base", str(micro_pair.base_dir), "--sft", str(micro_pair.sft_dir)]) == 0
    assert [(tasks, o.limit, o.num_fewshot, o.batch_size) for tasks, o in asked] == [
        (("gsm8k", "mmlu"), None, None, None)
    ] * 2  # batch None: lm-eval's "auto" on a GPU, 8 on the CPU
    assert "gsm8k" in capsys.readouterr().out


def test_the_batch_size_is_lm_evals_own_search_on_a_gpu_and_eight_on_the_cpu():
    from types import SimpleNamespace

    def on(device_type):
        weight = SimpleNamespace(device=SimpleNamespace(type=device_type))
        return SimpleNamespace(get_input_embeddings=lambda: SimpleNamespace(weight=weight))

    assert evaluate.batch_size_for(on("cuda"), evaluate.EvalOptions()) == "auto"
    assert evaluate.batch_size_for(on("cpu"), evaluate.EvalOptions()) == 8
    assert evaluate.batch_size_for(on("cuda"), evaluate.EvalOptions(batch_size=4)) == 4


def test_the_vllm_backend_without_vllm_says_how_to_install_it(tmp_path):
    import importlib.util

    from harness.errors import BadInputError

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here, so its absence cannot be shown; the backend runs on a GPU")
    with pytest.raises(BadInputError, match=r"pip install 'layerwise-sft-harness\[vllm\]'"):
        evaluate.vllm_scores(tmp_path, ["gsm8k"], evaluate.EvalOptions())


def test_lm_eval_probes_the_environment_once_per_process(monkeypatch):
    import lm_eval.evaluator as evaluator
    import lm_eval.loggers.utils as logger_utils

    probes = []
    monkeypatch.setattr(logger_utils, "add_env_info", lambda storage: (probes.append(1), storage.update(torch="2")))
    evaluate._environment.cache_clear()
    original = evaluator.add_env_info
    try:
        for _ in range(3):
            stored = {}
            with evaluate._environment_probed_once():
                evaluator.add_env_info(stored)
            assert stored == {"torch": "2"}  # every evaluation's results still say what the environment is
    finally:
        evaluate._environment.cache_clear()
    assert len(probes) == 1 and evaluator.add_env_info is original


def test_lm_eval_records_the_commit_without_git_complaining_outside_a_repository(tmp_path, monkeypatch, capfd):
    import subprocess

    import lm_eval.evaluator as evaluator

    if not hasattr(evaluator, "get_git_commit_hash"):
        pytest.skip("this lm-eval release records no git commit of its own")
    outside, repository = tmp_path / "outside", tmp_path / "repository"
    outside.mkdir()
    repository.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repository)]
    try:
        subprocess.run(["git", "init", "-q", str(repository)], check=True, capture_output=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True, capture_output=True)
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        pytest.skip(f"git cannot make a repository here ({error}); install git to run this check")
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # outside/ is no repository, whatever is above
    evaluate._git_commit.cache_clear()
    original = evaluator.get_git_commit_hash
    recorded = {}
    with evaluate._environment_probed_once():
        for folder in (outside, repository):
            monkeypatch.chdir(folder)
            recorded[folder.name] = evaluator.get_git_commit_hash()
    assert evaluator.get_git_commit_hash is original
    assert recorded == {"outside": None, "repository": head}
    assert "fatal" not in capfd.readouterr().err


def test_lm_eval_compiles_each_template_once_and_renders_the_same_text(monkeypatch):
    from lm_eval import utils

    template = "Question: {{question | regex_replace('  +', ' ')}}\nAnswer:"
    docs = [{"question": f"what  is {i}   + {i}?"} for i in range(5)]
    expected = [utils.apply_template(template, doc) for doc in docs]
    compiled = []
    original_from_string = utils.env.from_string
    monkeypatch.setattr(utils.env, "from_string", lambda text: (compiled.append(text), original_from_string(text))[1])
    evaluate._compiled_template.cache_clear()
    original = utils.apply_template
    with evaluate._templates_compiled_once():
        rendered = [utils.apply_template(template, doc) for doc in docs]
    assert rendered == expected and rendered[1] == "Question: what is 1 + 1?\nAnswer:"
    assert compiled == [template]  # once for five documents
    assert utils.apply_template is original  # lm-eval's own function again after the evaluation


def test_the_local_task_folder_follows_the_lm_eval_it_includes(isolated_cache, monkeypatch, tmp_path):
    # a cache shared by two environments (another checkout or venv) must not hand one the other's task files
    import lm_eval.tasks

    from harness.measure import evaluate

    options = evaluate.EvalOptions()
    here = evaluate.local_task_folder(options)
    assert here == evaluate.local_task_folder(options)  # found again, not rewritten
    moved = tmp_path / "elsewhere" / "lm_eval" / "tasks"
    monkeypatch.setattr(lm_eval.tasks, "__file__", str(moved / "__init__.py"))
    there = evaluate.local_task_folder(options)
    assert there != here and f"include: {moved}/gsm8k/gsm8k.yaml" in (there / "gsm8k_local.yaml").read_text()


def test_the_task_index_is_built_once_per_folder_where_lm_evals_manager_keeps_no_state(isolated_cache, monkeypatch):
    import lm_eval.tasks

    options = evaluate.EvalOptions()
    monkeypatch.setattr(evaluate, "_TASK_MANAGERS", {})
    local = evaluate.task_manager(["gsm8k_local"], options)
    assert "gsm8k_local" in local.all_tasks and "gsm8k" not in local.all_tasks  # lm-eval's own tasks not indexed
    assert evaluate.task_manager(["mmlu_local", "gsm8k_local"], options) is local

    built = []

    class RecordsGroups:  # an older manager: it records groups as it loads tasks
        def __init__(self, **kwargs):
            built.append(kwargs)
            self.task_group_map: dict = {}

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", RecordsGroups)
    monkeypatch.setattr(evaluate, "_TASK_MANAGERS", {})
    first, second = (evaluate.task_manager(["gsm8k"], options) for _ in range(2))
    assert first is not second and len(built) == 2 and built[0]["include_defaults"] is True
