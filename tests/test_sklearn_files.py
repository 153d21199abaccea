"""convscope reads scikit-learn's bundled digits and photos without importing scikit-learn
(the import costs ~1.5 s); the arrays must equal scikit-learn's own loaders exactly."""
import subprocess
import sys

import numpy as np

from convscope import sklearn_files


def test_digits_equal_scikit_learns_loader():
    from sklearn.datasets import load_digits
    images, target = sklearn_files.digits()
    bunch = load_digits()
    assert images.shape == (1797, 8, 8)          # scikit-learn's documented size
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(target, bunch.target)


def test_photos_equal_scikit_learns_loader():
    from sklearn.datasets import load_sample_image
    for name in sklearn_files.PHOTOS:
        np.testing.assert_array_equal(sklearn_files.photo(name), load_sample_image(f"{name}.jpg"))


def test_reading_them_does_not_import_scikit_learn():
    code = ("import sys; from convscope import sklearn_files as f; f.digits(); f.photo('china'); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
