"""Divergence (issue 15 point 4): the rule in convscope.train.divergence, used by the trainer
for both engines, and the command line stopping with one line that names the learning rate."""
import json
import math
import os

import numpy as np
import pytest

from convscope.cli import main
from convscope.train import divergence as D
from convscope.train import fit


def _rows(losses, accuracies=None):
    accuracies = accuracies or [0.9] * len(losses)
    return [{"epoch": i + 1, "train_loss": l, "train_accuracy": a, "val_loss": l, "val_accuracy": a}
            for i, (l, a) in enumerate(zip(losses, accuracies))]


def test_a_healthy_run_is_left_alone():
    assert D.symptom(_rows([2.0, 1.0, 0.5, 0.3, 0.2, 0.1]), 10) is None


def test_loss_growing_past_ten_times_the_first_epoch():
    # 1.0 -> 9.9 is under 10x; 10.5 is past it (first 1.0 is below ln 10 = 2.303, so it is the reference)
    assert D.symptom(_rows([1.0, 9.9]), 10) is None
    assert "grew to 10.5" in D.symptom(_rows([1.0, 10.5]), 10)


def test_a_first_epoch_that_already_blew_up_is_caught_against_a_uniform_guess():
    # 10 x ln 10 = 23.03: a first-epoch loss of 23.0 passes, 23.1 does not
    assert D.symptom(_rows([23.0]), 10) is None
    assert "2.3 of a uniform guess" in D.symptom(_rows([23.1]), 10)


def test_non_finite_loss():
    assert "nan" in D.symptom(_rows([1.0, math.nan]), 10)
    assert "inf" in D.symptom(_rows([1.0, math.inf]), 10)


def test_accuracy_at_chance_for_five_epochs():
    # chance for 10 classes is 10 %, the band goes to 15 %; four epochs are not enough, five are
    at_chance = [0.10, 0.12, 0.15, 0.08, 0.11]
    assert D.symptom(_rows([2.3] * 4, at_chance[:4]), 10) is None
    assert "stayed at chance (10 %" in D.symptom(_rows([2.3] * 5, at_chance), 10)
    assert D.symptom(_rows([2.3] * 5, at_chance[:4] + [0.16]), 10) is None


def test_message_names_the_learning_rate_and_a_tenth_of_it():
    line = D.message("the training loss is nan at epoch 3", 10.0, "kept")
    assert "learning rate 10 is probably too high, try --lr 1;" in line and "\n" not in line


def test_cli_stops_a_diverging_adamw_run_keeping_the_best_checkpoint(tmp_path, capsys):
    # the case: adamw at lr 10 on digits ended at loss 48,441,115 and 8.9 % with exit 0
    out = tmp_path / "run"
    code = main(["train", "--data", "digits", "--optimizer", "adamw", "--lr", "10", "--epochs", "20",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "training diverged" in err and "learning rate 10 is probably too high, try --lr 1;" in err
    assert "--keep-going" in err
    history = json.loads((out / "history.json").read_text())
    assert len(history) < 20  # stopped early, not after the 20 epochs asked for
    assert os.path.exists(out / "model.npz") and os.path.exists(out / "last.npz")


def test_keep_going_warns_once_and_trains_on(capsys):
    data = _tiny()
    result = fit(None, data, epochs=2, lr=10.0, optimizer="adamw", progress=False, keep_going=True)
    assert len(result.history) == 2
    err = capsys.readouterr().err
    assert err.count("training diverged") == 1 and "going on (--keep-going)" in err


def test_train_help_states_the_thresholds(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "10x the first epoch's" in text and "for 5 epochs" in text


def _tiny():
    from convscope.train.data import load_data
    return load_data("digits")
