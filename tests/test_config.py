import pytest

from cryocare.config import CareConfig
from cryocare.errors import InputError


def test_round_trip_through_dict():
    config = CareConfig(n_dim=2, unet_n_depth=3, train_loss="mae", seed=7)
    assert CareConfig.from_dict(config.to_dict()) == config


def test_unknown_key_is_named():
    with pytest.raises(InputError, match="'unet_depth'"):
        CareConfig.from_dict({"unet_depth": 2})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("unet_n_depth", 0, r"\[1, 6\]"),
        ("unet_kern_size", 4, "odd"),
        ("train_batch_size", 2.5, "integer"),
        ("train_epochs", True, "integer"),
        ("unet_residual", "False", "true or false"),  # cryoCARE read the string "False" as true
        ("train_learning_rate", 0.0, "0 < rate < 1"),
        ("train_loss", "l3", "mse, mae"),
        ("network", "no such net", "network name"),
    ],
)
def test_invalid_values_are_rejected_with_the_key(key, value, message):
    with pytest.raises(InputError, match=message) as info:
        CareConfig(**{key: value})
    assert key in str(info.value)


def test_replace_validates():
    config = CareConfig()
    assert config.replace(unet_n_depth=3).unet_n_depth == 3
    with pytest.raises(InputError):
        config.replace(unet_n_depth=-1)
