"""Issue 15 point 9, the small ones: channel-last warning, the smallest input in shape errors
(oracle: PyTorch's own layers), no "= 10 = 10", MACs in the unit that fits, and what a resume
with more epochs does to the schedule."""
import pytest

import convscope as cs
from convscope.analysis.format import scaled
from convscope.analysis.smallest import smallest_input
from convscope.cli import main
from convscope.train.schedules import Schedule, change_note


def test_channel_last_input_warns_once(capsys):
    assert main(["summary", "conv2d(4, 3) -> relu", "--input", "32x32x3", "--format", "json"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "convscope: warning: --input 32x32x3 is read as 32 channels" in err
    assert "give --input 3x32x32" in err
    assert main(["summary", "conv2d(4, 3) -> relu", "--input", "3x32x32", "--format", "json"]) == 0
    assert capsys.readouterr().err == ""  # channel-first: no warning


def test_alexnet_smallest_square_input_matches_torch(capsys):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    # torchvision's alexnet features (what the zoo's alexnet is): 63 is the smallest side that
    # survives the three overlapping max-pools; 62 leaves a 2×2 map before the last 3×3 pool
    features = nn.Sequential(nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                             nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                             nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1),
                             nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    with torch.no_grad():
        features(torch.zeros(1, 3, 63, 63))
        with pytest.raises(RuntimeError):
            features(torch.zeros(1, 3, 62, 62))
    assert smallest_input(cs.zoo.load("alexnet"), (3, 32, 32)) == (3, 63, 63)
    assert main(["summary", "alexnet", "--input", "3x32x32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith("the smallest square input that works is 3×63×63 "
                                                          "(--input 3x63x63)")


def test_no_repeated_value_in_bias_derivation(capsys):
    assert main(["summary", "flatten -> linear(10)", "--input", "1x4x4", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "bias adds = one per output = 10 (not MACs)" in out and "= 10 = 10" not in out


def test_macs_in_the_unit_that_fits(capsys):
    # lenet5: 416,520 MACs (conv 117,600 + 240,000, linear 48,000 + 10,080 + 840)
    assert scaled(416_520, "MACs") == "416.520 KMACs"
    assert scaled(714_188_480, "MACs") == "714.188 MMACs"
    assert scaled(1_814_083_944, "MACs") == "1.814 GMACs"
    assert scaled(840, "MACs") == "840 MACs"
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "MACs: 416,520 = 416.520 KMACs = 833.040 KFLOPs" in out and "0.000 GMACs" not in out


def test_resume_with_more_epochs_says_how_the_schedule_changes():
    old = Schedule("cosine", 0.003, total_epochs=20)
    new = Schedule("cosine", 0.003, total_epochs=30)
    note = change_note(old, new, 20)
    # cosine at epoch 21 of 30: 0.003·(1 + cos(π·20/30))/2 = 0.00075; of the old 20: eta_min 0;
    # at epoch 30: 0.003·(1 + cos(π·29/30))/2 = 0.0015·(1 − 0.9945219) = 8.217e-06
    assert note == ("the cosine schedule was planned for 20 epochs and now spans 30: the rate at epoch 21 is "
                    "0.00075 (it would have been 0) and reaches 8.217e-06 at epoch 30")
    assert change_note(old, Schedule("cosine", 0.003, total_epochs=20), 5) is None
    assert change_note(Schedule("constant", 0.01, total_epochs=20),
                       Schedule("constant", 0.01, total_epochs=30), 20) is None


def test_resume_prints_the_schedule_note(tmp_path, capsys):
    full = cs.train.load_data("digits")
    small = cs.train.from_arrays(full.train.x[:120], full.train.y[:120], full.class_names,
                                 full.preprocessing, name="digits-120", val_fraction=0.25)
    model = cs.parse_text("flatten -> linear(10)")
    cs.train.fit(model, small, epochs=1, out=tmp_path, progress=False)
    from io import StringIO
    from rich.console import Console
    buffer = StringIO()
    cs.train.fit(None, small, epochs=2, out=tmp_path, resume=True, console=Console(file=buffer, width=200))
    assert "the cosine schedule was planned for 1 epochs and now spans 2" in buffer.getvalue()
