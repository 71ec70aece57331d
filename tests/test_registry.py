"""Names, properties keys and files: each mistake is a one-line error naming what was expected."""

import subprocess
import sys
import types

import pytest

from recbole_biao import utils
from recbole_biao.errors import ConfigError, DataError
from recbole_biao.model.cross_domain_recommender import CoNet
from recbole_biao.trainer import CDRTrainer
from tests.conftest import config_for


def test_variant_names_resolve_to_one_class():
    assert utils.get_model("CoNet") == (CoNet, {})
    assert utils.get_model("CoNet-S") == (CoNet, {"variant": "S"})
    assert utils.get_model("CoNet-0") == (CoNet, {"variant": "0"})


def test_unknown_model_and_trainer_list_the_available_names():
    with pytest.raises(ConfigError, match=r"unknown model 'NoNet'; available: CoNet, CoNet-S, CoNet-0, MiNet, MiNet-S, MiNet-0, DASL, DASL-S, DASL-0"):
        utils.get_model("NoNet")
    with pytest.raises(ConfigError, match=r"unknown trainer 'Fancy'; available: CrossDomain, BIAO"):
        utils.get_trainer("Fancy")
    assert utils.get_trainer(None) is CDRTrainer


def test_models_and_trainers_fall_back_to_recbole_cdr(monkeypatch):
    """A source install of RecBole-CDR provides recbole_cdr.model.cross_domain_recommender.<name>."""
    fake = types.ModuleType("recbole_cdr.model.cross_domain_recommender.emcdr")
    fake.EMCDR = type("EMCDR", (), {})
    package = types.ModuleType("recbole_cdr.model.cross_domain_recommender")
    package.__path__ = []
    monkeypatch.setitem(sys.modules, package.__name__, package)
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(utils.importlib.util, "find_spec", lambda name, *a: fake.__spec__ or object())
    assert utils.get_model("EMCDR") == (fake.EMCDR, {})
    from recbole_cdr.trainer import DCDCSRTrainer
    assert utils.get_trainer("DCDCSR") is DCDCSRTrainer


def test_unknown_dataset(ml1m_path):
    with pytest.raises(ConfigError, match=r"unknown dataset 'books-toyz': no .*books-toyz.yaml; available: .*ml-1m-genres"):
        from recbole_biao.quick_start import build_config
        build_config("CoNet", "books-toyz")


@pytest.mark.parametrize("key,value,message", [
    ("train_batch_size", "many", r"'train_batch_size': expected int, got 'many'"),
    ("learning_rate", True, r"'learning_rate': expected int or float, got True"),
    ("variant", "X", r"'variant': expected one of \['base', 'S', '0'\], got 'X'"),
    ("mlp_hidden_size", 8, r"'mlp_hidden_size': expected list, got 8"),
    ("train_epochs", ["SOURCE:3"], r"BOTH mode only, got 'SOURCE'"),
])
def test_wrong_property_types(ml1m_path, key, value, message):
    with pytest.raises(ConfigError, match=message):
        config_for(ml1m_path[0], **{key: value})


def test_missing_config_file_and_atomic_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file 'nope.yaml' not found"):
        from recbole_biao.quick_start import build_config
        build_config("CoNet", None, ["nope.yaml"])
    from recbole_biao.data import BiaoDataset
    _, config = config_for(str(tmp_path))
    with pytest.raises(DataError, match=r"source_domain: atomic file '.*ml-1m-genres-source.inter' not found"):
        BiaoDataset(config)


def test_malformed_properties_file(tmp_path):
    from recbole_biao.quick_start import build_config
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.01\ntrain_batch_size: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: not valid YAML"):
        build_config("CoNet", None, [str(bad)])
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: expected a mapping of properties keys, got list"):
        build_config("CoNet", None, [str(bad)])


def test_cli_prints_one_line_errors():
    result = subprocess.run([sys.executable, "run_recbole_biao.py", "--model=NoNet"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown model 'NoNet'; available: CoNet, CoNet-S, CoNet-0, MiNet, MiNet-S, MiNet-0, DASL, DASL-S, DASL-0"]
    result = subprocess.run([sys.executable, "run_recbole_biao.py", "--train_batch_size=lots"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'train_batch_size': expected int, got 'lots'" in result.stderr


def test_malformed_atomic_file_is_one_line(ml1m_path, tmp_path):
    import shutil
    from recbole_biao.data import BiaoDataset
    for domain in ("source", "target"):
        shutil.copytree(f"{ml1m_path[0]}/ml-1m-genres-{domain}", tmp_path / f"ml-1m-genres-{domain}")
    inter = tmp_path / "ml-1m-genres-target" / "ml-1m-genres-target.inter"
    inter.write_text(inter.read_text().replace("\t5\t", "\tfive\t", 1))
    _, config = config_for(str(tmp_path))
    with pytest.raises(DataError, match=r"RecBole could not load the atomic files in .*ml-1m-genres-target"):
        BiaoDataset(config)
