"""Output names and data paths are checked before the file system is asked; the form's values by their types."""

import dataclasses

import pytest

from hypersd.train import names
from hypersd.train.form import FormError, valid_output_name
from hypersd.train.form_check import check_form, checked_text
from hypersd.train.preview import dataset_report


@pytest.mark.parametrize("name", ["house-hyper", "house_v2", "Ünïcode-名前", "a" * names.MAX_OUTPUT_NAME, "house.v2"])
def test_plain_names_are_accepted(name):
    assert valid_output_name(name) is None


@pytest.mark.parametrize(
    "name, words",
    [
        ("x" * (names.MAX_OUTPUT_NAME + 1), "101 characters (101 bytes) is too long; at most 100"),
        ("x" * 2**20, "1,048,576 characters"),
        ("名" * 70, "70 characters (210 bytes) is too long"),
        ("../../etc/passwd", "cannot be a file name"),
        ("a\\b", "cannot be a file name"),
        (".hidden", "cannot be a file name"),
        ("house\nhyper", "control characters ('\\n')"),
        ("house\x00", "control characters ('\\x00')"),
        ("evil\u202egnp", "control characters"),
        ("CON", "reserved device name on Windows"),
        ("nul.txt", "reserved device name"),
        ("house.safetensors", "leave out .safetensors"),
        ("   ", "give the LoRA a name"),
        (42, "expected text, got int"),
    ],
)
def test_bad_names_say_what_is_wrong(name, words):
    problem = valid_output_name(name)
    assert problem is not None and problem.startswith("Output name: ") and words in problem, problem
    assert len(problem) < 300  # a 1 MB name is measured, not repeated


@pytest.mark.parametrize(
    "text, words",
    [
        ("/data/" + "x" * 300, "longer than 255 bytes"),
        ("/d" * 2100, "bytes long; paths have at most 4,096"),
        ("/data/\x00x", "control characters ('\\x00')"),
        ("/data\n/more", "control characters ('\\n')"),
        (["/data"], "expected a path as text, got list"),
    ],
)
def test_paths_the_system_cannot_look_up_are_refused(text, words):
    problem = names.path_problem(text, "Training data")
    assert problem is not None and problem.startswith("Training data: ") and words in problem, problem


def test_ordinary_paths_pass():
    assert names.path_problem("", "x") is None and names.path_problem(None, "x") is None
    assert names.path_problem("~/train data/images", "x") is None


def test_the_report_says_when_the_system_refuses_a_path(tmp_path):
    # past the form check (a stored request, a caller of our own): the report answers instead of raising
    report = dataset_report(str(tmp_path / ("x" * 300)))
    assert any("the training data cannot be read: File name too long" in e for e in report.errors), report.errors
    assert dataset_report(str(tmp_path / "absent")).errors  # an ordinary missing folder keeps its own message


@dataclasses.dataclass
class Form:
    checkpoint: str = "model"
    data: str = ""
    gradient_checkpointing: bool = False
    normal_steps: float = 25
    normal_cfg: float = 7.0


def test_widget_values_pass_unchanged():
    form = Form(checkpoint=None, normal_steps=None, normal_cfg=5)
    assert check_form(form) is form


def test_every_value_of_the_wrong_type_is_named_at_once():
    form = Form(checkpoint=["a"], data="/x\x00", gradient_checkpointing="yes", normal_steps=float("nan"),
                normal_cfg=99)  # fmt: skip
    with pytest.raises(FormError) as info:
        check_form(form)
    message = str(info.value)
    assert message.startswith("Hyper-SD: fix these settings:\n- ")
    for words in ("Checkpoint: expected text, got list", "Training data: the path holds control characters",
                  "Gradient checkpointing: expected true or false", "Comparison: normal steps: expected a finite",
                  "Comparison: normal CFG: 99 is out of range; allowed 1…30"):  # fmt: skip
        assert words in message, words
    with pytest.raises(FormError, match="whole number"):
        check_form(Form(normal_steps=2.5))
    with pytest.raises(FormError, match="expected a number, got bool"):
        check_form(Form(normal_cfg=True))


def test_a_single_text_input():
    assert checked_text(None, "Stopped runs") == "" and checked_text("run", "x") == "run"
    with pytest.raises(FormError, match="^Hyper-SD: Stopped runs: expected text, got dict"):
        checked_text({"a": 1}, "Stopped runs")
