import pytest

from shapmix.config import Config, ConfigError, load_config, packaged_configs


def test_defaults_load_and_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=0.05", "schedule.milestones=[10, 20]", "data.val_split=null"])
    assert cfg.optim.lr == 0.05
    assert cfg.schedule.milestones == [10, 20]
    assert cfg.data.val_split is None


def test_unknown_key_in_yaml_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\n  learning_rate: 0.2\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "optim.learning_rate" in message and "unknown key" in message and "'lr'" in message


def test_unknown_override_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"no key 'lrr' in optim; allowed: \[.*'lr'"):
        load_config(None, ["optim.lrr=0.1"])


def test_bad_values_are_rejected_with_the_key():
    with pytest.raises(ConfigError, match=r"optim\.lr: .*greater than 0"):
        load_config(None, ["optim.lr=-1"])
    with pytest.raises(ConfigError, match=r"loss\.name"):
        load_config(None, ["loss.name=hinge"])
    with pytest.raises(ConfigError, match="p_interval"):
        load_config(None, ["data.p_interval=[0.9, 0.5]"])
    with pytest.raises(ConfigError, match="milestones must be increasing"):
        load_config(None, ["schedule.milestones=[80, 60]"])


def test_model_args_are_checked_against_the_backbone():
    cfg = load_config(None, ["model.args.base_channels=32"])
    assert cfg.model.args["base_channels"] == 32
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) \['widht'\] for model 'ctrgcn'"):
        load_config(None, ["model.args.widht=3"])
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        load_config(None, ["model.name=resnet"])


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("optim:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(path)


@pytest.mark.parametrize("name", sorted(packaged_configs()))
def test_every_packaged_config_validates(name):
    assert isinstance(load_config(name), Config)


def test_missing_config_file_is_an_error():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("nowhere.yaml")
