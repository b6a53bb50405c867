"""Weights & Biases failures said before the run directory exists (issue: nothing lost on the new surfaces),
reproduced first with a stand-in ``wandb`` package (the real one is not a dependency): not logged in (was
wandb's UsageError after the run directory was made), online with no network (137 s, then CommError), a
``./wandb`` folder of run files shadowing the package."""

import pytest

from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError
from flowkit.training.loggers import check_logger
from flowkit.training.loop import train
from tests.helpers import tiny


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A stand-in wandb package on the path, a home without ~/.netrc, no key and no mode set."""
    site = tmp_path / "site"
    (site / "wandb").mkdir(parents=True)
    (site / "wandb" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "home").mkdir()
    return tmp_path


def test_not_logged_in_is_one_line_before_the_run_directory(installed):
    with pytest.raises(ConfigError, match="not logged in to Weights & Biases.*wandb login.*WANDB_MODE=offline"):
        train(apply_overrides(load_recipe("rectified"), tiny(installed, "trainer.logger=wandb", steps=5)))
    assert not (installed / "runs").exists()


def test_offline_or_disabled_needs_no_login_and_no_network(installed, monkeypatch):
    for mode in ("offline", "disabled"):
        monkeypatch.setenv("WANDB_MODE", mode)
        check_logger("wandb")


def test_a_login_in_netrc_counts(installed, monkeypatch):
    (installed / "home" / ".netrc").write_text("machine 127.0.0.1\n  login user\n  password " + "k" * 40 + "\n")
    (installed / "home" / ".netrc").chmod(0o600)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="cannot reach 127.0.0.1:9"):  # past the login check
        check_logger("wandb")


def test_online_without_a_network_is_one_line_in_seconds(installed, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(ConfigError, match=r"cannot reach 127.0.0.1:9 .*WANDB_MODE=offline"):
        check_logger("wandb")


def test_a_wandb_folder_of_run_files_is_not_the_package(tmp_path, monkeypatch):
    (tmp_path / "wandb" / "run-20261205_1").mkdir(parents=True)  # what wandb leaves in the working directory
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # python -m flowkit puts the working directory first
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ConfigError, match=r"'wandb' is the folder .*wandb, not the installed package"):
        check_logger("wandb")
