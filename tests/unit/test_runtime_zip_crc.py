"""torch.save's record CRCs: off while kubetrain writes (torch.load never checks them), the
user's setting back afterwards, and the files still load exactly."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from kubetrain.runtime.collective import rank_file

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
config = pytest.importorskip("torch.utils.serialization").config

from kubetrain.runtime.torch_support import TorchSaveCodec, zip_crc32  # noqa: E402


@pytest.mark.parametrize("users_setting", [True, False])
@pytest.mark.parametrize("codec_crc", [False, True])
def test_torch_save_codec_writes_without_crcs_and_restores_the_setting(
    tmp_path: Path, users_setting: bool, codec_crc: bool
) -> None:
    config.save.compute_crc32 = users_setting
    try:
        weights = torch.randn(1000)
        TorchSaveCodec(zip_crc32=codec_crc).save(tmp_path, {"w": weights}, rank=0)
        assert config.save.compute_crc32 is users_setting
        crcs = [i.CRC for i in zipfile.ZipFile(rank_file(tmp_path, 0, ".pt")).infolist()]
        assert any(crcs) is (codec_crc and users_setting)  # zip_crc32=True: the user's choice
        state = {"w": torch.zeros(1000)}
        TorchSaveCodec().load(tmp_path, state, rank=0)
        assert torch.equal(state["w"], weights)
    finally:
        config.save.compute_crc32 = True


def test_overlapping_writers_restore_the_setting_when_the_last_one_ends() -> None:
    assert config.save.compute_crc32 is True
    outer = zip_crc32(False)
    outer.__enter__()
    with zip_crc32(False):  # e.g. an emergency save while a background write still runs
        assert config.save.compute_crc32 is False
    assert config.save.compute_crc32 is False  # the outer write is still going
    outer.__exit__(None, None, None)
    assert config.save.compute_crc32 is True
