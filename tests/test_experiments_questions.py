"""Assignment answer files (experiments/assignments/*.yaml) and `cnnlab answers`: loading, order, computed numbers,
claims checked against runs.csv, and answers.json written atomically and rebuilt identically."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_checks import one_error_line, run
from cnnlab.errors import CnnlabError
from cnnlab.experiments import questions as A

REPO = Path(__file__).resolve().parents[1]
HW2 = REPO / "experiments" / "assignments" / "hw2.yaml"
HW3 = REPO / "experiments" / "assignments" / "hw3.yaml"
PROJECT2 = REPO / "experiments" / "assignments" / "project2.yaml"
RESULTS = REPO / "results"

# The assignments' questions in their order (the texts in shared/assignments).
HW2_IDS = ["HW2 1.1", "HW2 1.2", "HW2 1.3", "HW2 1.4", "HW2 1.5", "HW2 2.1", "HW2 2.2", "HW2 2.3", "HW2 2.4",
           "HW2 2.5", *(f"HW2 Lab 1({c})" for c in "abcdefgh"), "HW2 Lab 2(a)", "HW2 Lab 2(b)i", "HW2 Lab 2(b)ii",
           "HW2 Lab 2(b)iii", "HW2 Lab 2(c)i", "HW2 Lab 2(c)ii", "HW2 Lab 2(c)iii", "HW2 Lab 3(a)", "HW2 Lab 3(b)"]
HW3_IDS = ["HW3 1.1", "HW3 1.2", "HW3 1.3", "HW3 1.4", *(f"HW3 2.{i}" for i in range(1, 8)), "HW3 3.1", "HW3 3.2",
           "HW3 3.3", "HW3 3.4(a)", "HW3 3.4(b)", "HW3 3.4(c)", "HW3 3.4(d)", "HW3 4.1", "HW3 4.2", "HW3 4.3"]

PROJECT2_IDS = [*(f"Project 2 §1.1.{i}" for i in range(1, 7)), "Project 2 §1.2", "Project 2 §2.1", "Project 2 §2.2",
                "Project 2 §2.3", "Project 2 §2.4.1", "Project 2 §2.4.2"]


@pytest.mark.parametrize("path, ids", [(HW2, HW2_IDS), (HW3, HW3_IDS), (PROJECT2, PROJECT2_IDS)],
                         ids=["hw2", "hw3", "project2"])
def test_every_question_present_in_order(path, ids):
    a = A.load_assignment(path)
    assert [q.id for q in a.questions] == ids
    for q in a.questions:
        for code in q.spec.get("code", []):
            file, _, name = code.partition("::")
            assert (REPO / file).is_file(), f"{q.id}: {file} does not exist"
            if name:  # a top-level function or class of that file (the document prints only it)
                tops = {n.name for n in ast.parse((REPO / file).read_text()).body if hasattr(n, "name")}
                assert name in tops, f"{q.id}: {file} defines no top-level {name}"


def test_every_calc_question_has_a_function():
    assert all(callable(A.calc_function(name)) for name in A.CALCS)


def _write(tmp_path, data, name="a.yaml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


GOOD_Q = {"id": "Q1", "question": "why?", "text": "because."}


@pytest.mark.parametrize("data, says", [
    ("questions: [\n", "not valid YAML"),
    ({"assignment": "X", "title": "T"}, "needs 'questions:'"),
    ({"assignment": "X", "title": "T", "questions": [GOOD_Q], "extra": 1}, "unknown key 'extra'"),
    ({"assignment": "X", "title": "T", "questions": [GOOD_Q, GOOD_Q]}, "'Q1' appears twice"),
    ({"assignment": "X", "title": "T", "questions": [{"id": "Q1", "question": "q"}]}, "needs exactly one of"),
    ({"assignment": "X", "title": "T", "questions": [{**GOOD_Q, "recipe": "01-simplenn-decay"}]},
     "it has recipe, text"),
    ({"assignment": "X", "title": "T", "questions": [{"id": "Q1", "question": "q", "calc": {"question": "nope"},
                                                      "answer": "x"}]}, "calc question 'nope' is not known"),
    ({"assignment": "X", "title": "T", "questions": [{"id": "Q1", "question": "q", "calc": {"question": "fc"}}]},
     "answer"),
    ({"assignment": "X", "title": "T", "questions": [{"id": "Q1", "question": "q", "claim": {
        "verdict": "no", "reason": "r", "checks": []}}]}, "verdict must be true or false"),
    ({"assignment": "X", "title": "T", "questions": [{"id": "Q1", "question": "q", "claim": {
        "verdict": False, "reason": "r", "checks": [{"recipe": "x", "metric": "m", "a": {"v": 1}, "b": {"v": 2},
                                                      "expect": "more", "says": "s"}]}}]}, "expect must be"),
    ({"assignment": "X", "title": "T", "questions": [{**GOOD_Q, "examples": {"dataset": "cifar10",
                                                                             "file": "../x.png"}}]},
     "examples file must be a .png name"),
    ({"assignment": "X", "title": "T", "questions": [{**GOOD_Q, "examples": {"dataset": "cifar10", "file": "x.png",
                                                                             "per_class": "many"}}]},
     "examples per_class must be a whole number"),
])
def test_bad_file_is_one_line_naming_the_problem(tmp_path, capsys, data, says):
    path = _write(tmp_path, data)
    with pytest.raises(CnnlabError) as e:
        A.load_assignment(path)
    assert says in str(e.value) and "\n" not in str(e.value)
    code = run(["answers", str(path), "--out", str(tmp_path / "out"), "--results", str(RESULTS)])
    assert says in one_error_line(capsys, code)


def _built(doc, qid):
    return next(q for q in doc["questions"] if q["id"] == qid)


@pytest.fixture(scope="module")
def hw2_doc(tmp_path_factory):
    return A.build(HW2, tmp_path_factory.mktemp("hw2"), str(RESULTS))


def test_calc_answers_are_the_calculators_numbers(hw2_doc):
    # by hand: 100·100·3 inputs x 100 neurons + 100 biases; 100 filters x (3·3·3 + 1); 1·1·16 + 1; (100-5)/1+1
    assert _built(hw2_doc, "HW2 2.1")["answer"].startswith(f"{100 * 100 * 3 * 100 + 100:,} parameters")
    assert "3,000,100" in _built(hw2_doc, "HW2 2.1")["answer"]
    assert _built(hw2_doc, "HW2 2.2")["answer"].startswith(f"{100 * (3 * 3 * 3 + 1):,} parameters")
    assert _built(hw2_doc, "HW2 2.3")["answer"].startswith(f"{1 * 1 * 16 + 1} parameters")
    assert _built(hw2_doc, "HW2 2.4")["answer"].startswith("96x96x32:")
    q = _built(hw2_doc, "HW2 2.1")
    assert q["kind"] == "calc" and q["source"] == "cnnlab calc fc --input 100x100x3 --units 100"
    assert any("3,000,000 + 100 = 3,000,100" in line for line in q["evidence"])  # the working is the evidence
    # SimpleNN by hand: conv 5·5·3·8+8, conv 3·3·8·16+16, FC 576·120+120, 120·84+84, 84·10+10
    simplenn = 608 + 1168 + 69240 + 10164 + 850
    assert f"{simplenn:,} parameters" in _built(hw2_doc, "HW2 Lab 1(a)")["answer"]


def test_hw3_calc_numbers_by_hand(tmp_path):
    a = A.load_assignment(HW3)
    ctx = A.Context(RESULTS, tmp_path)
    by_id = {q.id: q for q in a.questions}
    inc = A.build_calc(by_id["HW3 3.4(c)"], ctx)["answer"]
    naive = 32 * 32 * 256 * (128 * 1 + 192 * 9 + 96 * 25)
    reduced = 32 * 32 * (128 * 256 + 64 * 256 + 192 * 9 * 64 + 64 * 256 + 96 * 25 * 64 + 64 * 256)
    assert f"Naive: {naive:,}" in inc and f"dimension-reduced: {reduced:,}" in inc
    assert A.build_calc(by_id["HW3 3.4(b)"], ctx)["answer"].startswith("Naive: 32x32x672")
    assert A.build_calc(by_id["HW3 3.3"], ctx)["answer"].startswith("13x13")
    vgg = A.build_calc(by_id["HW3 3.2"], ctx)
    rows = vgg["tables"][0]["rows"]
    assert rows[1] == ["CONV3-64", "224x224x64", f"{224 * 224 * 64:,}", f"{3 * 3 * 3 * 64:,}"]
    assert ["FC-4096", "1x1x4096", "4,096", f"{4096 * 4096:,}"] in rows
    assert sum(int(r[3].replace(",", "")) for r in rows[:-1]) == int(rows[-1][3].replace(",", ""))


def _fake_results(tmp_path, rows):
    results = tmp_path / "results"
    (results / "fake").mkdir(parents=True)
    with open(results / "fake" / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run", "variant", "status", "weight_sparsity"])
        w.writeheader()
        w.writerows(rows)
    return results


CLAIM = {"assignment": "X", "title": "T", "questions": [{
    "id": "X 1", "question": "L1 gives less sparsity than L2.",
    "claim": {"verdict": False, "reason": "L1 pulls small weights to zero.",
              "checks": [{"recipe": "fake", "metric": "weight_sparsity", "a": {"variant": "l1"},
                          "b": {"variant": "l2"}, "expect": "higher", "says": "L1 left more weights near zero"}]}}]}


def test_claim_whose_evidence_contradicts_it_is_reported_contradicted(tmp_path):
    results = _fake_results(tmp_path, [
        {"run": "a", "variant": "l1", "status": "finished", "weight_sparsity": "0.02"},
        {"run": "b", "variant": "l2", "status": "finished", "weight_sparsity": "0.20"},
        {"run": "c", "variant": "l1", "status": "failed", "weight_sparsity": "0.90"}])  # failed runs do not count
    doc = A.build(_write(tmp_path, CLAIM), tmp_path / "out", str(results))
    q = doc["questions"][0]
    assert q["status"] == "contradicted"
    assert q["answer"].startswith("False by the reasoning, but our measurement contradicts")
    assert "L1 left more weights near zero (recipe fake: 2.00% against 20.00%), and it did not hold" in q["answer"]
    assert "2.00% (n=1) against 20.00% (n=1), lower; expected higher: does not hold" in q["evidence"][0]


def test_claim_whose_evidence_holds_is_answered_with_the_numbers(tmp_path):
    results = _fake_results(tmp_path, [
        {"run": "a", "variant": "l1", "status": "finished", "weight_sparsity": "0.30"},
        {"run": "b", "variant": "l1", "status": "finished", "weight_sparsity": "0.10"},
        {"run": "c", "variant": "l2", "status": "finished", "weight_sparsity": "0.02"}])
    q = A.build(_write(tmp_path, CLAIM), tmp_path / "out", str(results))["questions"][0]
    assert q["status"] == "answered" and q["answer"].startswith("False: L1 pulls small weights to zero.")
    assert q["answer"].endswith("Measured: L1 left more weights near zero (recipe fake: 20.00% against 2.00%).")
    assert "20.00% (n=2) against 2.00% (n=1), higher; expected higher: holds" in q["evidence"][0]


def test_claim_selector_naming_no_runs_is_an_error(tmp_path):
    results = _fake_results(tmp_path, [{"run": "a", "variant": "l1", "status": "finished", "weight_sparsity": "1"}])
    with pytest.raises(CnnlabError, match="no finished runs match"):
        A.build(_write(tmp_path, CLAIM), tmp_path / "out", str(results))


def test_committed_claims_hold_and_hw2_1_5_waits_on_its_recipe(hw2_doc):
    for qid in ("HW2 1.1", "HW2 1.2", "HW2 1.3", "HW2 1.4"):
        q = _built(hw2_doc, qid)
        assert q["kind"] == "claim" and q["answer"].startswith("False") and q["status"] == "answered", q
        assert q["evidence"] and all(line.startswith("results/") for line in q["evidence"][:-1])
        assert q["evidence"][-1].startswith("Runs compared: ")
    q = _built(hw2_doc, "HW2 1.5")
    assert q["answer"].startswith("True:")
    if not (RESULTS / "12-shortcut-landscape" / "answers.json").exists():
        assert q["status"] == "pending" and q["caveat"].startswith("Answered from the literature")


def test_recipe_answers_are_copied_by_label_prefix(hw2_doc):
    blocks = json.loads((RESULTS / "03-bn-swish" / "answers.json").read_text())
    labels = [a["question"] for a in blocks[0]["answers"]]
    q = _built(hw2_doc, "HW2 Lab 2(b)i")   # not 2(b)ii's or 2(b)iii's answers
    mine = [label for label in labels if label.startswith("HW2 Lab 2(b)i:")]
    assert q["evidence"][1] == "from results/03-bn-swish/answers.json: " + "; ".join(mine)
    assert q["figures"][0]["path"].endswith("/03-bn-swish/report_files/fig02.png")
    assert q["figures"][0]["caption"] == "training loss per epoch (recipe 03-bn-swish)"  # as its report shows it


def test_a_stand_in_says_so_once_per_answer_however_many_recipe_sentences_it_joins(tmp_path):
    from cnnlab.experiments.report import STAND_IN

    results = tmp_path / "results" / "r"
    results.mkdir(parents=True)
    (results / "answers.json").write_text(json.dumps([{"source": "r (cpu profile)", "ran": "ran: 8 epochs",
        "stands_in": "8 epochs, not 100", "answers": [
            {"question": "X 1: width", "text": f"{STAND_IN}: the best width is 4."},
            {"question": "X 1: loss", "text": f"{STAND_IN}: the best loss is smooth_l2."}]}]))
    data = {"assignment": "X", "title": "T", "questions": [{"id": "X 1", "question": "q", "recipe": "r",
                                                             "answers": ["X 1"]}]}
    q = A.build(_write(tmp_path, data), tmp_path / "out", str(tmp_path / "results"))["questions"][0]
    assert q["answer"] == f"{STAND_IN}: the best width is 4. The best loss is smooth_l2."


def _concluded_build(tmp_path, expect):
    """A recipe question with a conclusion whose one check expects l1's sparsity `expect` than l2's."""
    from cnnlab.experiments.report import STAND_IN

    results = _fake_results(tmp_path, [
        {"run": "a", "variant": "l1", "status": "finished", "weight_sparsity": "0.30"},
        {"run": "b", "variant": "l2", "status": "finished", "weight_sparsity": "0.02"}])
    (results / "fake" / "answers.json").write_text(json.dumps([{"source": "fake (cpu profile)", "answers": [
        {"question": "X 1: sparsity", "text": f"{STAND_IN}: b_min = 4 and l1 left 30.00% near zero."}]}]))
    data = {"assignment": "X", "title": "T", "questions": [{
        "id": "X 1", "question": "q", "recipe": "fake",
        "conclusion": {"text": "Yes: L1 makes weights sparse.", "checks": [
            {"recipe": "fake", "metric": "weight_sparsity", "a": {"variant": "l1"}, "b": {"variant": "l2"},
             "expect": expect, "says": "L1 left more weights near zero"}]}}]}
    return A.build(_write(tmp_path, data), tmp_path / "out", str(results))["questions"][0], STAND_IN


def test_a_conclusion_opens_the_recipe_answer_after_the_stand_in_words(tmp_path):
    q, stand_in = _concluded_build(tmp_path, "higher")
    # the stand-in's words first, then the plain conclusion, then the recipe's numbers; a symbol keeps its case
    assert q["answer"] == f"{stand_in}: Yes: L1 makes weights sparse. b_min = 4 and l1 left 30.00% near zero."
    assert any("30.00% (n=1) against 2.00% (n=1), higher; expected higher: holds" in e for e in q["evidence"])


def test_a_conclusion_its_runs_contradict_says_so_first(tmp_path):
    q, stand_in = _concluded_build(tmp_path, "lower")
    assert q["answer"].startswith(f"{stand_in}: Our runs contradict the conclusion we expected (Yes: L1 makes "
                                  "weights sparse): we expected that L1 left more weights near zero")


def test_a_check_against_a_fixed_value_says_it_and_can_fail(tmp_path):
    """HW2 Lab 3(b): 'stayed below 90%' is checked against the value 0.9; a run past it turns the words round."""
    from cnnlab.experiments.questions import run_check

    results = _fake_results(tmp_path, [{"run": "a", "variant": "l1", "status": "finished", "weight_sparsity": "0.3"}])
    ctx = A.Context(results, tmp_path / "out")
    check = {"recipe": "fake", "metric": "weight_sparsity", "a": {"variant": "l1"}, "b": 0.5, "expect": "lower",
             "says": "below half"}
    r = run_check(check, ctx, "q")
    assert r.holds and "variant=l1 against the value 50.00%: 30.00% (n=1) against 50.00% (n=1), lower" in r.line
    assert run_check({**check, "b": 0.2}, ctx, "q").holds is False
    with pytest.raises(CnnlabError, match="'b' must be a non-empty mapping .* or a number"):
        A.load_assignment(_write(tmp_path, {"assignment": "X", "title": "T", "questions": [{
            "id": "X 1", "question": "q", "recipe": "fake", "conclusion": {"text": "t", "checks": [
                {**check, "b": "half"}]}}]}))


def test_a_recipe_question_shows_the_settings_its_runs_used(tmp_path):
    """HW3 1.2: the optimizers' table lists defaults; the runs used other rates, shown from runs.csv."""
    q, _ = _concluded_build(tmp_path, "higher")
    data = {"assignment": "X", "title": "T", "questions": [{"id": "X 1", "question": "q", "recipe": "fake",
                                                             "answers": ["X 1"], "settings": ["variant"]}]}
    q = A.build(_write(tmp_path, data), tmp_path / "out", str(tmp_path / "results"))["questions"][0]
    assert q["tables"] == [{"columns": ["variant"], "rows": [["l1"], ["l2"]],
                            "caption": "The settings its runs used (recipe fake)"}]
    data["questions"][0]["settings"] = ["optim.nope"]
    with pytest.raises(CnnlabError, match="runs.csv has no column 'optim.nope'"):
        A.build(_write(tmp_path, data), tmp_path / "out", str(tmp_path / "results"))


def test_a_conclusion_belongs_to_recipe_questions_only(tmp_path, capsys):
    data = {"assignment": "X", "title": "T", "questions": [{"id": "X 1", "question": "q", "text": "t",
                                                             "conclusion": {"text": "Yes."}}]}
    with pytest.raises(CnnlabError, match="conclusion is for recipe questions"):
        A.load_assignment(_write(tmp_path, data))


def test_hw3_2_4_answers_the_literal_question_first():
    # the committed answers (test_committed_hw3_answers_and_figures_rebuild rebuilds them from the committed files)
    doc = json.loads((RESULTS / "assignments" / "hw3" / "answers.json").read_text())
    q = _built(doc, "HW3 2.4")
    assert q["answer"].split(": ", 1)[1].startswith("Only partly."), q["answer"]
    assert q["status"] == "answered" and "expected higher: holds" in " ".join(q["evidence"])
    q = _built(doc, "HW3 2.5")
    from cnnlab.analysis.range_tests import batch_words

    committed = RESULTS / "08-fashion-clr-cbs" / "report_runs" / "analysis" / "batch-range" / "find-batch.csv"
    with committed.open(newline="") as f:
        words = batch_words(list(csv.DictReader(f)))   # the range read back from the committed test's losses
    assert "Not from part 4's curve" in q["answer"] and q["answer"].endswith(words)
    assert "batch.min" not in q["answer"] and "batch.policy" not in q["answer"]  # no config keys in an answer


def test_recipe_not_run_is_pending(tmp_path):
    data = {"assignment": "X", "title": "T", "questions": [{"id": "X 1", "question": "q", "recipe": "99-none"}]}
    (tmp_path / "results").mkdir()
    q = A.build(_write(tmp_path, data), tmp_path / "out", str(tmp_path / "results"))["questions"][0]
    assert q["status"] == "pending" and q["kind"] == "recipe"


def test_command_writes_atomically_and_rebuilds_identically(tmp_path, capsys):
    out = tmp_path / "hw2"
    argv = ["answers", str(HW2), "--out", str(out), "--results", str(RESULTS)]
    assert run(argv) == 0
    first = (out / "answers.json").read_bytes()
    assert run(argv) == 0
    assert (out / "answers.json").read_bytes() == first
    assert sorted(p.name for p in out.iterdir()) == ["answers.json"]  # no temporary file left behind
    doc = json.loads(first)
    assert doc["assignment"] == "HW2" and [q["id"] for q in doc["questions"]] == HW2_IDS
    keys = {"id", "question", "kind", "answer", "evidence", "figures", "tables", "source", "code", "caveat", "status"}
    assert all(set(q) == keys and q["answer"] for q in doc["questions"])
    # a build that fails leaves the previous file as it was
    bad = _write(tmp_path, {"assignment": "X", "title": "T", "questions": [
        {"id": "X 1", "question": "q", "recipe": "03-bn-swish", "answers": ["no such label"]}]})
    assert "no answer labelled 'no such label'" in one_error_line(
        capsys, run(["answers", str(bad), "--out", str(out), "--results", str(RESULTS)]))
    assert (out / "answers.json").read_bytes() == first


# When a recipe's committed results change, the answers built from them are stale until rebuilt:
REBUILD = ("results/assignments/{0}/answers.json is stale; rebuild it: cnnlab answers experiments/assignments/{0}.yaml "
           "--out results/assignments/{0} --data-root ../shared/data")


def _same_figures(doc):
    """The document with each figure path cut to what does not depend on where it was built (stem/report_files/x)."""
    for q in doc["questions"]:
        q["figures"] = [{**f, "path": "/".join(f["path"].split("/")[-3:])} for f in q["figures"]]
    return doc


def test_committed_hw2_answers_rebuild_from_committed_files(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    built = A.build(HW2.relative_to(REPO), tmp_path / "hw2", "results")
    committed = json.loads((RESULTS / "assignments" / "hw2" / "answers.json").read_text())
    assert all(f["path"].startswith("../../") for q in committed["questions"] for f in q["figures"])
    assert _same_figures(built) == _same_figures(committed), REBUILD.format("hw2")


def test_committed_hw3_answers_and_figures_rebuild(tmp_path, shared_data, session_cache, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(session_cache))
    monkeypatch.chdir(REPO)
    out = tmp_path / "hw3"
    doc = A.build(HW3.relative_to(REPO), out, "results", str(shared_data))
    committed = json.loads((RESULTS / "assignments" / "hw3" / "answers.json").read_text())
    assert _same_figures(doc) == _same_figures(committed), REBUILD.format("hw3")
    p2 = A.build(PROJECT2.relative_to(REPO), tmp_path / "project2", "results", str(shared_data))
    assert _same_figures(p2) == _same_figures(json.loads((RESULTS / "assignments" / "project2" /
                                                          "answers.json").read_text())), REBUILD.format("project2")
    assert _built(doc, "HW3 2.1")["answer"].startswith("Fashion-MNIST has 70,000 grayscale images")
    (cutout,) = _built(doc, "HW3 4.1")["figures"]
    assert cutout["path"] == "fig-cutout.png" and "after Cutout 16x16 on the right" in cutout["caption"]
    for name in ("fig-cutout.png", "fig-fashion-mnist.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _built(doc, "HW3 1.1")["tables"][0]["rows"][0][0].startswith("adagrad")


@pytest.mark.parametrize("question, says", [
    ({"calc": {"question": "fc", "h": 2, "w": 2, "c": 3, "units": 4}, "answer": "{nope:,}"}, "fields are"),
    ({"calc": {"question": "fc", "h": 2, "w": 2, "c": 3, "units": 4, "depth": 9}, "answer": "x"},
     "calc fc does not take these arguments"),
    ({"calc": {"question": "conv", "h": 0, "w": 2, "c": 3, "filters": 1, "size": 1}, "answer": "x"}, "height"),
    ({"recipe": "03-bn-swish", "answers": ["HW2 Lab 2(b)i"], "figures": ["03-bn-swish/report_files/none.png"]},
     "figure '03-bn-swish/report_files/none.png' not found"),
    ({"claim": {"verdict": False, "reason": "r", "checks": [{"recipe": "05-regularization", "metric": "nope",
                                                              "a": {"variant": "l1"}, "b": {"variant": "l2"},
                                                              "expect": "higher", "says": "s"}]}},
     "runs.csv has no column 'nope'"),
])
def test_bad_source_is_one_line_at_build(tmp_path, capsys, question, says):
    path = _write(tmp_path, {"assignment": "X", "title": "T", "questions": [{"id": "X 1", "question": "q",
                                                                            **question}]})
    code = run(["answers", str(path), "--out", str(tmp_path / "out"), "--results", str(RESULTS)])
    assert says in one_error_line(capsys, code)
    assert not (tmp_path / "out" / "answers.json").exists()


def _landscape_results(tmp_path, profile, resnet, plain):
    """A fabricated results/<stem>/answers.json with two landscape analysis answers (centre, left end, right end)."""
    text = "Analysis {step}: {run}: loss at the trained weights {:.4f}, at the ends {:.4f} / {:.4f} (alpha = -1 / 1)"
    answers = [{"question": f"L {step}", "kind": "analysis", "text": text.format(*v, step=step, run=step[10:])}
               for step, v in (("landscape-resnet56", resnet), ("landscape-plain56", plain))]
    results = tmp_path / "results"
    (results / "shortcuts").mkdir(parents=True)
    (results / "shortcuts" / "answers.json").write_text(json.dumps([{
        "source": f"shortcuts ({profile} profile)", "ran": "ran: cifar10, 500 training images, 1 epoch",
        "answers": answers}]))
    return results


MEASURED = {"assignment": "X", "title": "T", "questions": [{
    "id": "X 1.5", "question": "Shortcuts make the surface smoother.",
    "claim": {"verdict": True, "reason": "the literature says so.",
              "measure": {"recipe": "shortcuts", "command": "cnnlab sweep s.yaml", "cost": "a minute",
                          "flatter": {"a": "landscape-resnet56", "b": "landscape-plain56",
                                      "says": "the ResNet's basin was flatter"}}}}]}


def test_measured_claim_pending_then_checked_against_its_landscapes(tmp_path):
    path = _write(tmp_path, MEASURED)
    (tmp_path / "empty").mkdir()
    q = A.build(path, tmp_path / "out", str(tmp_path / "empty"))["questions"][0]
    assert q["status"] == "pending" and q["answer"] == "True: the literature says so."
    assert q["caveat"].startswith("Answered from the literature: recipe shortcuts, which measures it, has not run")

    results = _landscape_results(tmp_path, "full", resnet=(0.5, 1.5, 2.5), plain=(0.6, 9.0, 7.0))
    q = A.build(path, tmp_path / "out", str(results))["questions"][0]
    assert q["status"] == "answered"
    assert q["answer"].endswith("Measured: the ResNet's basin was flatter (recipe shortcuts: 1.5 against 7.4).")

    results = _landscape_results(tmp_path / "smoke", "quick", resnet=(2.7, 553.8, 105.2), plain=(2.3, 382.8, 26.9))
    q = A.build(path, tmp_path / "out", str(results))["questions"][0]
    assert q["status"] == "contradicted" and q["answer"].startswith("True by the reasoning, but our measurement")
    assert q["caveat"].startswith("Smoke test (shortcuts, quick profile")


WORDS = ["fc", "conv", "rf", "vgg19", "05-regularization", "03-bn-swish", "variant", "l1", "l2", "higher", "lower",
         "weight_sparsity", "best_val_acc", "fashion-mnist", "nope", "x.png", "../x.png", "..", "/etc", "{params}",
         "HW2 Lab 2(b)i", "adam", "RMSprop"]
KEYS = [*A.QUESTION_KEYS, *A.CLAIM_KEYS, *A.CHECK_KEYS, "question", "h", "w", "c", "units", "name", "bogus"]
leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True), st.text(max_size=6),
                 st.sampled_from(WORDS))
value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                     max_leaves=12)
loose = st.fixed_dictionaries({"id": st.one_of(st.sampled_from(["Q 1", "Q 2"]), leaf), "question": leaf},
                              optional={k: value for k in KEYS if k not in ("id", "question")})
# Nearly well-formed questions, so that the fuzzing reaches the builders and not only the loader.
selector = st.dictionaries(st.sampled_from(["variant", "group", "optim.weight_decay", "nope"]), leaf, max_size=2)
check = st.fixed_dictionaries({"recipe": st.sampled_from(["05-regularization", "07-adaptive-optimizers", "zz"]),
                               "metric": st.sampled_from(["weight_sparsity", "test_acc", "run", "nope"]),
                               "a": selector, "b": selector, "expect": st.sampled_from(["higher", "lower", "x"]),
                               "says": st.sampled_from(["s", ""])},
                              optional={"per": st.sampled_from(["variant", "group", "nope"]), "holds": leaf})
calc = st.fixed_dictionaries({"question": st.sampled_from([*A.CALCS, "zz"])},
                             optional={k: leaf for k in ("h", "w", "c", "units", "filters", "size", "layers", "name")})
shaped = st.one_of(
    st.fixed_dictionaries({"id": st.just("Q 1"), "question": st.just("q"), "calc": calc,
                           "answer": st.sampled_from(["{params}", "x", "{nope}", "{0}", "{params:zz}"])}),
    st.fixed_dictionaries({"id": st.just("Q 1"), "question": st.just("q"), "claim": st.fixed_dictionaries(
        {"verdict": st.one_of(st.booleans(), leaf), "reason": st.just("r"), "checks": st.lists(check, max_size=2)})}),
    st.fixed_dictionaries({"id": st.just("Q 1"), "question": st.just("q"),
                           "recipe": st.sampled_from(["03-bn-swish", "zz", "..", "a/b"])},
                          optional={"answers": st.lists(st.sampled_from(WORDS), max_size=2),
                                    "figures": st.lists(st.sampled_from(WORDS), max_size=2)}),
    st.fixed_dictionaries({"id": st.just("Q 1"), "question": st.just("q"), "text": st.just("t")},
                          optional={"optimizers": st.lists(st.sampled_from(WORDS), max_size=2)}))
question = st.one_of(loose, shaped)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(questions=st.lists(question, min_size=1, max_size=3))
def test_hostile_assignment_files_get_one_line_or_an_answer(questions, tmp_path_factory, capsys, bad_input):
    """Whatever an assignment file holds, `cnnlab answers` writes answers or says what is wrong in one line."""
    bad_input()
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "a.yaml"
    path.write_text(yaml.safe_dump({"assignment": "X", "title": "T", "questions": questions}))
    code = run(["answers", str(path), "--out", str(tmp / "out"), "--results", str(RESULTS)])
    if code == 0:
        assert json.loads((tmp / "out" / "answers.json").read_text())["questions"]
        capsys.readouterr()
    else:
        one_error_line(capsys, code)
