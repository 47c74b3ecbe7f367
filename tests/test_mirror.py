"""Mirrors (``blendgan download --from``) and weights that fetch themselves, against a folder and
an HTTP server on 127.0.0.1 (this machine only: no test reaches the internet)."""
from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

from blendgan import BlendGAN, defaults
from blendgan import download as dl
from blendgan.cli import main
from blendgan.download import DownloadError, download, fetch_missing_defaults
from blendgan.errors import CheckpointError
from blendgan.jobs.report import SETTINGS_FILE


def _save_style_encoder(path: Path, size: int = 200_000) -> None:
    """A valid style_encoder.pt of ~``4·size`` bytes (the validator wants a dict of tensors)."""
    torch.save({"state_dict": {"mlp.0.weight": torch.arange(size, dtype=torch.float32)}}, path)


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """GET files of ``root`` with HTTP ranges (``bytes=N-``); records every request.
    ``cut_after``: send only that many bytes of a body, then close (a dropped connection);
    ``ignore_range``: answer 200 with the whole file, as simple servers do."""
    root: Path
    requests: list
    cut_after: int | None = None
    ignore_range = False
    wrong_offset = False  # answer a range request with 206 from byte 0 (a broken server)

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append((self.path, self.headers.get("Range")))
        path = self.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and not self.ignore_range:
            start = 0 if self.wrong_offset else int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.cut_after is not None:
            body = body[:self.cut_after]
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if self.cut_after is not None:
            self.close_connection = True

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(root: Path, **settings):
    """An HTTP mirror of ``root`` on 127.0.0.1; yields (base URL, handler class)."""
    handler = type("Handler", (MirrorHandler,), {"root": root, "requests": [], **settings})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/weights", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def small_mirror(tmp_path) -> Path:
    root = tmp_path / "mirror"
    (root / "weights").mkdir(parents=True)
    _save_style_encoder(root / "weights" / "style_encoder.pt")
    return root


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


# -- folders ----------------------------------------------------------------------------------

def test_folder_mirror_copies_validates_and_resumes(small_mirror, tmp_path, capsys):
    src = small_mirror / "weights" / "style_encoder.pt"
    dest = tmp_path / "dest"
    dest.mkdir()
    data = src.read_bytes()
    (dest / "style_encoder.pt.part").write_bytes(data[:1000])  # an interrupted earlier copy
    assert download(dest, names=("style_encoder",), source=small_mirror / "weights") == [dest / "style_encoder.pt"]
    assert (dest / "style_encoder.pt").read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["style_encoder.pt"]
    assert "OK (style encoder weights" in capsys.readouterr().err
    # file:// URLs name folders too
    download(tmp_path / "again", names=("style_encoder",), source=(small_mirror / "weights").as_uri())
    assert (tmp_path / "again" / "style_encoder.pt").read_bytes() == data


def test_folder_mirror_errors_are_one_line(small_mirror, tmp_path):
    with pytest.raises(DownloadError) as e:
        download(tmp_path / "d", names=("style_encoder",), source=tmp_path / "nowhere")
    assert "nowhere: no such folder" in _one_line(e)
    with pytest.raises(DownloadError) as e:
        download(tmp_path / "d", names=("blendgan",), source=small_mirror / "weights")
    message = _one_line(e)
    assert "blendgan.pt: download failed" in message and str(small_mirror / "weights" / "blendgan.pt") in message


# -- HTTP ----------------------------------------------------------------------------------

def test_http_mirror_resumes_a_dropped_transfer(small_mirror, tmp_path):
    dest = tmp_path / "dest"
    data = (small_mirror / "weights" / "style_encoder.pt").read_bytes()
    with serve(small_mirror, cut_after=300_000) as (url, handler):
        with pytest.raises(DownloadError) as e:
            download(dest, names=("style_encoder",), source=url, progress=False)
    message = _one_line(e)
    assert "connection closed after 300000 of" in message and "run again to resume" in message
    assert (dest / "style_encoder.pt.part").read_bytes() == data[:300_000]
    with serve(small_mirror) as (url, handler):
        download(dest, names=("style_encoder",), source=url, progress=False)
    assert handler.requests == [("/weights/style_encoder.pt", "bytes=300000-")]
    assert (dest / "style_encoder.pt").read_bytes() == data
    assert not (dest / "style_encoder.pt.part").exists()


def test_http_server_without_ranges_sends_it_all_again(small_mirror, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    data = (small_mirror / "weights" / "style_encoder.pt").read_bytes()
    (dest / "style_encoder.pt.part").write_bytes(b"x" * 5000)  # not even a prefix of the file
    with serve(small_mirror, ignore_range=True) as (url, handler):
        download(dest, names=("style_encoder",), source=url, progress=False)
    assert handler.requests == [("/weights/style_encoder.pt", "bytes=5000-")]
    assert (dest / "style_encoder.pt").read_bytes() == data


def test_http_resume_at_the_wrong_offset_starts_over(small_mirror, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    data = (small_mirror / "weights" / "style_encoder.pt").read_bytes()
    (dest / "style_encoder.pt.part").write_bytes(data[:1000])
    with serve(small_mirror, wrong_offset=True) as (url, _):
        with pytest.raises(DownloadError) as e:
            download(dest, names=("style_encoder",), source=url, progress=False)
    assert "resumed at another offset than 1000" in _one_line(e)
    assert not (dest / "style_encoder.pt.part").exists()  # never glued to the wrong bytes
    with serve(small_mirror, wrong_offset=True) as (url, handler):
        download(dest, names=("style_encoder",), source=url, progress=False)  # a fresh start needs no range
    assert handler.requests == [("/weights/style_encoder.pt", None)]
    assert (dest / "style_encoder.pt").read_bytes() == data


def test_http_complete_part_file_is_validated_not_refetched(small_mirror, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    shutil.copy(small_mirror / "weights" / "style_encoder.pt", dest / "style_encoder.pt.part")
    with serve(small_mirror) as (url, handler):
        download(dest, names=("style_encoder",), source=url, progress=False)
    assert [r[1] for r in handler.requests] == [f"bytes={(dest / 'style_encoder.pt').stat().st_size}-"]
    assert (dest / "style_encoder.pt").stat().st_size == (small_mirror / "weights" / "style_encoder.pt").stat().st_size


def test_http_errors_are_one_line_and_invalid_files_kept_aside(small_mirror, tmp_path):
    (small_mirror / "weights" / "psp_encoder.pt").write_bytes(b"<html>quota exceeded</html>")
    with serve(small_mirror) as (url, _):
        with pytest.raises(DownloadError) as e:
            download(tmp_path / "d", names=("blendgan",), source=url, progress=False)
        message = _one_line(e)
        assert "HTTP 404" in message and f"{url}/blendgan.pt" in message
        with pytest.raises(DownloadError) as e:
            download(tmp_path / "d", names=("psp_encoder",), source=url, progress=False)
        assert "HTML page" in _one_line(e)
    assert (tmp_path / "d" / "psp_encoder.pt.invalid").exists() and not (tmp_path / "d" / "psp_encoder.pt").exists()


def test_download_command_from_a_mirror(small_mirror, tmp_path, capsys):
    with serve(small_mirror) as (url, handler):
        assert main(["download", "--from", url, "--files", "style_encoder", "--dir", str(tmp_path / "w"),
                     "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "w" / "style_encoder.pt")
    assert main(["download", "--from", str(tmp_path / "missing"), "--dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing: no such folder" in err


# -- weights that fetch themselves -------------------------------------------------------------

@pytest.fixture
def in_empty_project(tmp_path, monkeypatch) -> Path:
    """The current folder is a fresh one: the default weight paths are missing there."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(defaults.ENV_MIRROR, raising=False)
    return work


@pytest.fixture
def golden_mirror(golden_ckpts, tmp_path) -> Path:
    """A folder holding the golden checkpoints under the official names (hard links)."""
    root = tmp_path / "mirror"
    (root / "weights").mkdir(parents=True)
    for src in (golden_ckpts.blendgan, golden_ckpts.psp):
        try:
            os.link(src, root / "weights" / Path(src).name)
        except OSError:
            shutil.copyfile(src, root / "weights" / Path(src).name)
    return root


def test_first_command_fetches_missing_default_weights(in_empty_project, golden_mirror, golden, sample_dirs,
                                                       monkeypatch):
    """The README's first command on a fresh machine: `blendgan transfer` with the default
    weight paths downloads them (here from an HTTP mirror), validates them and runs."""
    monkeypatch.delenv(defaults.ENV_OFFLINE, raising=False)
    out = in_empty_project / "outputs"
    with serve(golden_mirror) as (url, handler):
        monkeypatch.setenv(defaults.ENV_MIRROR, url)
        assert main(["transfer", "--input", str(sample_dirs.faces), "--style", str(sample_dirs.styles),
                     "--outdir", str(out), "--device", "cpu", "--quiet"]) == 0
        assert sorted(r[0] for r in handler.requests) == ["/weights/blendgan.pt", "/weights/psp_encoder.pt"]
        # present now: loading them again fetches nothing
        m = BlendGAN.from_pretrained(defaults.CKPT, psp_encoder=defaults.PSP_ENCODER)
        assert len(handler.requests) == 2
    assert len([p for p in out.iterdir() if p.name != SETTINGS_FILE]) == 4
    weights = in_empty_project / defaults.WEIGHTS_DIR
    assert sorted(p.name for p in weights.iterdir()) == ["blendgan.pt", "psp_encoder.pt"]
    with torch.no_grad():
        codes = m.encode_face(golden["face_tensor"])
    assert torch.linalg.norm(codes - golden["psp_codes"]) / torch.linalg.norm(golden["psp_codes"]) < 1e-4


def test_offline_means_no_request(in_empty_project, small_mirror, monkeypatch, capsys):
    with serve(small_mirror) as (url, handler):
        monkeypatch.setenv(defaults.ENV_MIRROR, url)
        monkeypatch.setenv(defaults.ENV_OFFLINE, "1")
        with pytest.raises(CheckpointError) as e:
            BlendGAN.from_pretrained(defaults.CKPT)
        assert _one_line(e) == f"{defaults.CKPT}: no such file; get the official weights with `blendgan download` " \
                               "(see pretrained_models/README.md)"
        monkeypatch.delenv(defaults.ENV_OFFLINE)
        with pytest.raises(CheckpointError, match="no such file"):
            BlendGAN.from_pretrained(defaults.CKPT, offline=True)
        # the commands' --offline
        faces = in_empty_project / "faces"
        faces.mkdir()
        assert main(["transfer", "--input", str(faces), "--style", str(faces), "--offline", "--device", "cpu"]) == 2
        assert "blendgan.pt: no such file" in capsys.readouterr().err
        assert handler.requests == []


def test_only_default_paths_fetch_themselves(in_empty_project, monkeypatch):
    monkeypatch.setenv(defaults.ENV_MIRROR, str(in_empty_project / "unused"))
    assert fetch_missing_defaults(["elsewhere/blendgan.pt", None], offline=False) == []
    with pytest.raises(CheckpointError, match="elsewhere/blendgan.pt: no such file"):
        BlendGAN.from_pretrained("elsewhere/blendgan.pt", offline=False)


def test_no_network_is_the_one_line_of_a_missing_file(in_empty_project, monkeypatch):
    def refuse(timeout):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(dl, "check_connectivity", refuse)
    with pytest.raises(CheckpointError) as e:
        BlendGAN.from_pretrained(defaults.CKPT, psp_encoder=defaults.PSP_ENCODER, offline=False)
    message = _one_line(e)
    assert message.startswith(f"{defaults.CKPT}, {defaults.PSP_ENCODER}: no such file, and no network")
    assert "blendgan download" in message


@pytest.mark.parametrize("value, offline", [("1", True), ("yes", True), ("0", False), ("", False), ("off", False)])
def test_offline_variable(monkeypatch, value, offline):
    monkeypatch.setenv(defaults.ENV_OFFLINE, value)
    assert dl.offline_requested() is offline
    assert dl.offline_requested(False) is False and dl.offline_requested(True) is True
