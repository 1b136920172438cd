"""Prediction options: one validated object, built alike by every face, planned for a device."""

import pytest

from cryocare import backends
from cryocare.cli.main import build_parser
from cryocare.cli.options import predict_options
from cryocare.compat import PredictConfig
from cryocare.config import PredictOptions
from cryocare.errors import InputError
from cryocare.nets import NetworkSpec
from cryocare.predict import Device, plan_prediction

#: cryoCARE's default U-Net (depth 3, 16 filters): halo 51, pooling 8 (nets.spec).
UNET = NetworkSpec(halo=51, multiple_of=8, bytes_per_voxel=434, streamed_bytes_per_voxel=49)


def test_the_cli_a_cryocare_config_and_python_build_equal_options():
    python = PredictOptions.from_dict({"memory": "2G", "tta": 4, "precision": "bfloat16",
                                       "device": "gpu:0", "progress": True})
    args = build_parser().parse_args(
        ["predict", "--model", "m", "--even", "e.mrc", "--odd", "o.mrc", "--output", "x.mrc",
         "--memory", "2G", "--tta", "4", "--precision", "bfloat16", "--device", "gpu:0"])
    cli = predict_options(args)
    config = PredictConfig.from_dict({"path": "m.tar.gz", "even": ["e.mrc"], "odd": ["o.mrc"],
                                      "output": "out", "n_tiles": [2, 2, 2], "gpu_id": 0})
    cryocare_config = config.options(PredictOptions(memory=2 * 2**30, tta=4,
                                                    precision="bfloat16", progress=True))
    assert cli == python == cryocare_config
    assert python.memory == 2 * 2**30 and python.device == "gpu:0"
    # the defaults are declared once
    defaults = build_parser().parse_args(["predict", "--model", "m", "--even", "e.mrc",
                                          "--odd", "o.mrc", "--output", "x.mrc", "-q"])
    assert predict_options(defaults) == PredictOptions()


@pytest.mark.parametrize(("key", "value", "message"), [
    ("memory", "lots", "memory: expected a size like 512M"),
    ("precision", "float16", "precision: expected one of float32, bfloat16"),
    ("tta", 3, "tta: expected True, False, 2, 4, 8 or 'auto'"),
    ("batch_size", 0, "batch_size: expected a positive integer"),
    ("device", "tpu", "device: expected cpu, gpu or gpu:N"),
    ("engine", "tensorrt", "engine: expected one of keras"),
    ("normalize", "dataset", "normalize: expected one of training, image"),
    ("tile_shape", (0, 8, 8), "tile_shape: expected positive sizes"),
    ("memori", "2G", "unknown key(s) 'memori'"),
])
def test_bad_options_are_refused_by_name(key, value, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PredictOptions.from_dict({key: value})


def test_options_are_immutable_and_replace_validates_again():
    options = PredictOptions(memory="1G")
    with pytest.raises(AttributeError):
        options.memory = 5
    assert options.replace(tta=True).tta is True and options.tta is False
    with pytest.raises(InputError, match="precision"):
        options.replace(precision="int8")


def test_the_plan_sizes_tiles_to_the_gpus_memory_not_the_hosts():
    shape = (256, 1024, 1024)  # a 1 GiB half: tiles on a 16 GB card
    gpu = plan_prediction(shape, UNET, PredictOptions(), images=2,
                          device=Device("gpu", free_memory=16 * 2**30))
    host = plan_prediction(shape, UNET, PredictOptions(), images=2,
                           device=Device("cpu", free_memory=64 * 2**30))
    assert not gpu.streamed and gpu.memory <= 16 * 2**30 and len(gpu.tiles.tiles) > 1
    assert gpu.memory > 4 * 2**30  # it uses the card, not a fraction fit for a laptop
    # the same budget on the host streams the U-Net level by level, in far fewer tiles
    assert host.streamed and len(host.tiles.tiles) < len(gpu.tiles.tiles)
    # an explicit budget wins over the device's
    small = plan_prediction(shape, UNET, PredictOptions(memory="2G"), images=2,
                            device=Device("gpu", free_memory=16 * 2**30))
    assert small.memory <= 2 * 2**30 < gpu.memory


def test_the_device_is_the_gpu_the_backend_computes_on(monkeypatch):
    monkeypatch.setattr(backends, "computes_on_gpu", lambda: True)
    monkeypatch.setattr(backends, "gpu_free_memory", lambda: 16 * 2**30)
    assert Device.current() == Device("gpu", free_memory=16 * 2**30)
    assert Device.current("cpu").kind == "cpu"  # asked for the CPU
    assert Device.current(engine="onnxruntime").kind == "cpu"  # the exported graph: CPU
    monkeypatch.setattr(backends, "computes_on_gpu", lambda: False)
    assert Device.current().kind == "cpu"
