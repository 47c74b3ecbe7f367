"""blendgan.download without the network: the Google Drive transfer is replaced by an
injected ``fetch`` (or a fake ``gdown`` module), everything else runs for real.

The success path for ``blendgan.pt`` / ``psp_encoder.pt`` needs real-layout checkpoints:
the ``golden_ckpts`` fixture (from the test suite's conftest) provides 256px ones.
"""
from __future__ import annotations

import io
import os
import shutil
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from blendgan import download as dl
from blendgan.download import FILES, DownloadError, download


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link (instant, same file system) or copy ``src`` to ``dst``."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _save_style_encoder(path: Path, value: float = 0.0) -> None:
    torch.save({"state_dict": {"mlp.0.weight": torch.full((4, 3), value)}}, path)


class Recorder:
    """A fetch that runs ``writers[file_id](out_path)`` and records its calls."""

    def __init__(self, writers: dict):
        self.writers = writers  # drive id -> callable(out_path)
        self.calls: list[tuple[str, Path]] = []

    def __call__(self, file_id: str, out_path: Path) -> None:
        self.calls.append((file_id, Path(out_path)))
        self.writers[file_id](Path(out_path))


def _forbidden_fetch(file_id, out_path):
    raise AssertionError(f"fetch must not be called (asked for {file_id})")


@pytest.fixture
def no_gdown(monkeypatch):
    """Make ``import gdown`` fail, whether or not it is installed."""
    monkeypatch.setitem(sys.modules, "gdown", None)


@pytest.fixture
def fake_gdown(monkeypatch):
    """A stand-in ``gdown`` module; each test sets its ``download`` function."""
    module = types.ModuleType("gdown")
    monkeypatch.setitem(sys.modules, "gdown", module)
    return module


@pytest.fixture
def online(monkeypatch):
    """The connectivity probe succeeds without touching the network."""
    probes = []
    monkeypatch.setattr(dl, "check_connectivity", lambda timeout: probes.append(timeout))
    return probes


# -- argument checks ------------------------------------------------------------------------

def test_unknown_name_rejected(tmp_path):
    with pytest.raises(DownloadError) as e:
        download(tmp_path / "w", names=("blendgan", "stylegan"), fetch=_forbidden_fetch)
    message = _one_line(e)
    assert "'stylegan'" in message and "'style_encoder'" in message
    assert not (tmp_path / "w").exists()


def test_bad_timeout_rejected(tmp_path):
    with pytest.raises(DownloadError, match="timeout"):
        download(tmp_path, timeout=0, fetch=_forbidden_fetch)


def test_table_has_the_official_ids():
    assert FILES["blendgan"].drive_id == "1eF04jKMLAb9DvzI72m8Akn5ykWf3EafE"
    assert FILES["psp_encoder"].drive_id == "14nevG94hNkkwaoK5eJLF1iv78cv5O8fN"
    assert FILES["style_encoder"].drive_id == "1EaM0ZYsAMdPkbRz0smLNIlJ1rxVAhbEz"
    filename, drive_id, validate = FILES["psp_encoder"]
    assert filename == "psp_encoder.pt" and callable(validate)


# -- no gdown, no network -----------------------------------------------------------------

def test_missing_gdown_message(tmp_path, no_gdown):
    with pytest.raises(DownloadError) as e:
        download(tmp_path, names=("blendgan", "style_encoder"))
    message = _one_line(e)
    assert 'pip install "blendgan[download]"' in message
    assert "https://drive.google.com/uc?id=1eF04jKMLAb9DvzI72m8Akn5ykWf3EafE" in message
    assert "https://drive.google.com/uc?id=1EaM0ZYsAMdPkbRz0smLNIlJ1rxVAhbEz" in message
    assert str(tmp_path) in message
    assert list(tmp_path.iterdir()) == []


def test_no_network_fails_fast_with_one_line(tmp_path, fake_gdown, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("gdown.download must not be reached when offline")

    fake_gdown.download = never
    attempts = []

    def refuse(address, timeout=None):
        attempts.append((address, timeout))
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(dl.socket, "create_connection", refuse)
    start = time.monotonic()
    with pytest.raises(DownloadError) as e:
        download(tmp_path / "w", timeout=3.5)
    assert time.monotonic() - start < 2.0
    message = _one_line(e)
    assert "cannot reach" in message and "Network is unreachable" in message
    assert dl.manual_url("psp_encoder") in message and dl.manual_url("blendgan") in message
    assert attempts and attempts[0][1] == 3.5
    assert not (tmp_path / "w").exists()  # nothing created, no .part left behind


def test_probe_goes_through_an_https_proxy(monkeypatch):
    monkeypatch.setattr(dl.urllib.request, "getproxies", lambda: {"https": "http://proxy.example:3128"})
    monkeypatch.setattr(dl.urllib.request, "proxy_bypass", lambda host: False)
    assert dl.probe_target() == ("proxy.example", 3128)
    monkeypatch.setattr(dl.urllib.request, "getproxies", lambda: {})
    assert dl.probe_target() == ("drive.google.com", 443)


# -- the gdown-based fetch ----------------------------------------------------------------

def test_gdown_is_asked_to_resume_into_the_part_file(tmp_path, fake_gdown, online):
    calls = []

    def gdown_download(url=None, output=None, quiet=False, resume=False, timeout=None, **kwargs):
        calls.append(dict(url=url, output=output, resume=resume, timeout=timeout))
        _save_style_encoder(Path(output))
        return output

    fake_gdown.download = gdown_download
    paths = download(tmp_path, names=("style_encoder",), timeout=4.0)
    assert paths == [tmp_path / "style_encoder.pt"]
    assert calls == [dict(url=dl.manual_url("style_encoder"), output=str(tmp_path / "style_encoder.pt.part"),
                          resume=True, timeout=4.0)]
    assert online == [4.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["style_encoder.pt"]


def test_old_gdown_without_resume_still_works(tmp_path, fake_gdown, online):
    def gdown_download(url, output=None, quiet=False):  # gdown 3.x signature
        _save_style_encoder(Path(output))
        return output

    fake_gdown.download = gdown_download
    assert download(tmp_path, names="style_encoder") == [tmp_path / "style_encoder.pt"]
    assert (tmp_path / "style_encoder.pt").is_file()


def test_gdown_refusal_is_one_line(tmp_path, fake_gdown, online):
    fake_gdown.download = lambda url, output=None, quiet=False: None  # old gdown: refused
    with pytest.raises(DownloadError) as e:
        download(tmp_path, names=("psp_encoder",))
    message = _one_line(e)
    assert "psp_encoder.pt" in message and "refused" in message
    assert dl.manual_url("psp_encoder") in message


def test_interrupted_fetch_keeps_the_part_file(tmp_path):
    def broken(file_id, out_path):
        Path(out_path).write_bytes(b"first half")
        raise ConnectionError("Connection reset by peer\nmore details")

    with pytest.raises(DownloadError) as e:
        download(tmp_path, names=("blendgan",), fetch=broken)
    message = _one_line(e)
    assert "blendgan.pt" in message and "Connection reset by peer" in message and "resume" in message
    assert (tmp_path / "blendgan.pt.part").read_bytes() == b"first half"
    assert not (tmp_path / "blendgan.pt").exists()


# -- validation -------------------------------------------------------------------------------

def _bad_generator(path):
    torch.save({"g_ema": {"to_rgbs.0.bias": torch.zeros(1, 3, 1, 1)}}, path)


def _bad_psp(path):
    torch.save({"state_dict": {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3)},
                "latent_avg": torch.zeros(512)}, path)


def _truncated(path):
    buffer = io.BytesIO()
    torch.save({"g_ema": {"to_rgbs.0.bias": torch.zeros(1000)}}, buffer)
    path.write_bytes(buffer.getvalue()[:2000])


def _html_page(path):
    path.write_bytes(b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title>")


@pytest.mark.parametrize("name, writer, problem", [
    ("blendgan", _bad_generator, "generator"),
    ("blendgan", _html_page, "HTML page"),
    ("blendgan", _truncated, "not a readable PyTorch checkpoint"),
    ("blendgan", lambda p: p.write_bytes(b"truncated"), "not a readable PyTorch checkpoint"),
    ("psp_encoder", _bad_psp, "pSp encoder"),
    ("psp_encoder", lambda p: torch.save([torch.zeros(1)], p), "expected a dict"),
    ("style_encoder", lambda p: torch.save([torch.zeros(1)], p), "expected a dict"),
    ("style_encoder", lambda p: torch.save({}, p), "empty"),
    ("style_encoder", lambda p: torch.save({"epoch": 3}, p), "no tensors"),
])
def test_invalid_download_is_kept_as_invalid(tmp_path, name, writer, problem):
    filename, drive_id, _ = FILES[name]
    fetch = Recorder({drive_id: writer})
    with pytest.raises(DownloadError) as e:
        download(tmp_path, names=(name,), fetch=fetch)
    message = _one_line(e)
    assert str(tmp_path / filename) in message and problem in message
    assert f"{filename}.invalid" in message
    assert fetch.calls == [(drive_id, tmp_path / f"{filename}.part")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{filename}.invalid"]


def test_invalid_download_does_not_clobber_a_valid_file(tmp_path):
    _save_style_encoder(tmp_path / "style_encoder.pt", 1.0)
    fetch = Recorder({FILES["style_encoder"].drive_id: lambda p: torch.save({}, p)})
    with pytest.raises(DownloadError):
        download(tmp_path, names=("style_encoder",), overwrite=True, fetch=fetch)
    kept = torch.load(tmp_path / "style_encoder.pt", weights_only=True)
    assert kept["state_dict"]["mlp.0.weight"][0, 0] == 1.0
    assert (tmp_path / "style_encoder.pt.invalid").exists()


def test_valid_downloads_are_moved_into_place(tmp_path, golden_ckpts):
    dest = tmp_path / "pretrained_models"
    fetch = Recorder({FILES["blendgan"].drive_id: lambda p: _link_or_copy(Path(golden_ckpts.blendgan), p),
                      FILES["psp_encoder"].drive_id: lambda p: _link_or_copy(Path(golden_ckpts.psp), p)})
    paths = download(dest, fetch=fetch)
    assert paths == [dest / "blendgan.pt", dest / "psp_encoder.pt"]
    assert [c[0] for c in fetch.calls] == [FILES["blendgan"].drive_id, FILES["psp_encoder"].drive_id]
    assert [c[1].name for c in fetch.calls] == ["blendgan.pt.part", "psp_encoder.pt.part"]
    assert sorted(p.name for p in dest.iterdir()) == ["blendgan.pt", "psp_encoder.pt"]
    assert (dest / "blendgan.pt").stat().st_size == Path(golden_ckpts.blendgan).stat().st_size

    # a second run finds both valid and fetches nothing (no gdown, no network needed)
    assert download(dest, fetch=_forbidden_fetch) == paths


def test_swapped_golden_files_are_rejected(tmp_path, golden_ckpts):
    fetch = Recorder({FILES["blendgan"].drive_id: lambda p: _link_or_copy(Path(golden_ckpts.psp), p)})
    with pytest.raises(DownloadError) as e:
        download(tmp_path, names=("blendgan",), fetch=fetch)
    assert "blendgan.pt" in _one_line(e)
    assert (tmp_path / "blendgan.pt.invalid").exists() and not (tmp_path / "blendgan.pt").exists()


# -- existing files -------------------------------------------------------------------------

def test_existing_valid_file_is_skipped_without_gdown(tmp_path, no_gdown, capsys):
    _save_style_encoder(tmp_path / "style_encoder.pt")
    assert download(tmp_path, names=("style_encoder",)) == [tmp_path / "style_encoder.pt"]
    assert "already present" in capsys.readouterr().err


def test_overwrite_fetches_again(tmp_path):
    _save_style_encoder(tmp_path / "style_encoder.pt", 1.0)
    (tmp_path / "style_encoder.pt.part").write_bytes(b"stale leftover")
    drive_id = FILES["style_encoder"].drive_id
    fetch = Recorder({drive_id: lambda p: _save_style_encoder(p, 2.0)})
    download(tmp_path, names=("style_encoder",), fetch=fetch)
    assert fetch.calls == []  # not without overwrite
    download(tmp_path, names=("style_encoder",), overwrite=True, fetch=fetch)
    assert len(fetch.calls) == 1
    new = torch.load(tmp_path / "style_encoder.pt", weights_only=True)
    assert new["state_dict"]["mlp.0.weight"][0, 0] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["style_encoder.pt"]


def test_existing_invalid_file_is_fetched_again(tmp_path, capsys):
    (tmp_path / "style_encoder.pt").write_bytes(b"truncated")
    fetch = Recorder({FILES["style_encoder"].drive_id: _save_style_encoder})
    download(tmp_path, names=("style_encoder",), fetch=fetch)
    assert len(fetch.calls) == 1
    assert "present but not valid" in capsys.readouterr().err
    assert isinstance(torch.load(tmp_path / "style_encoder.pt", weights_only=True), dict)
